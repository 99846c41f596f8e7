//! Admission before any request body is read. `Analyze` and `AnalyzeStream`
//! take one of the pipeline's analysis slots as soon as their headers
//! arrive; when every slot is taken the call is refused at once with
//! RESOURCE_EXHAUSTED (and a `retry-after-ms` hint) without reading the
//! upload. So at most `limits.max_concurrent_analyses` uploads are held in
//! memory at any time, each no larger than its size limit, however many
//! clients send at once.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::server::NamedService;

use cxr_pipeline::{Admission, Pipeline};

/// The analysis methods that carry a file.
const GATED: [&str; 2] = [
    "/cxr_triage.v1.Triage/Analyze",
    "/cxr_triage.v1.Triage/AnalyzeStream",
];

/// The slot taken for a request, handed to its handler in the request's
/// extensions.
#[derive(Clone)]
pub(crate) struct AdmissionSlot(Arc<Mutex<Option<Admission>>>);

impl AdmissionSlot {
    /// The slot, once.
    pub(crate) fn take(&self) -> Option<Admission> {
        self.0.lock().ok().and_then(|mut a| a.take())
    }
}

/// Wraps the Triage service with admission (see the module docs).
#[derive(Clone)]
pub struct Admitted<S> {
    inner: S,
    pipeline: Arc<Pipeline>,
}

impl<S> Admitted<S> {
    /// `inner` behind admission to `pipeline`'s analysis slots.
    pub fn new(inner: S, pipeline: Arc<Pipeline>) -> Admitted<S> {
        Admitted { inner, pipeline }
    }
}

impl<S: NamedService> NamedService for Admitted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> tower_service::Service<http::Request<Body>> for Admitted<S>
where
    S: tower_service::Service<
            http::Request<Body>,
            Response = http::Response<Body>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if GATED.contains(&request.uri().path()) {
            match self.pipeline.admit() {
                Ok(admission) => {
                    request
                        .extensions_mut()
                        .insert(AdmissionSlot(Arc::new(Mutex::new(Some(admission)))));
                }
                Err(e) => {
                    let status = super::status_of(e);
                    metrics::counter!("cxr_requests_failed_total", "code" => format!("{:?}", status.code()))
                        .increment(1);
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            }
        }
        Box::pin(self.inner.call(request))
    }
}
