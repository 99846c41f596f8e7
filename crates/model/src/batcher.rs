//! Dynamic batching: one thread per model owns its session and drains a
//! bounded queue into batches of at most `max_batch` images, waiting at most
//! `max_delay` after the oldest request for company. A full queue refuses at
//! once (the API maps that to RESOURCE_EXHAUSTED); a request whose caller has
//! gone away is dropped before it costs an inference. A backend that panics
//! fails its batch (every caller gets [`EngineError::Inference`]), is marked
//! unhealthy, and the thread keeps serving. Dropping the [`Batcher`] stops
//! intake, runs what is queued, and joins the thread.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::backend::Backend;
use super::occlusion::{self, OcclusionSettings};
use super::session::ImageOutput;
use super::EngineError;

/// Batching settings (per model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchSettings {
    /// Largest batch run at once.
    pub max_batch: usize,
    /// Longest wait, after the oldest queued request, for a batch to fill.
    pub max_delay_ms: u64,
    /// Requests that may wait; more are refused as overload.
    pub queue_capacity: usize,
    /// Longest an image may wait for its result (queue and inference), ms;
    /// past it the caller gets [`EngineError::DeadlineExceeded`] (the image
    /// is filed NOT_ANALYZED for a human) instead of waiting on a stuck
    /// device. 0: no deadline. Applies to the service's asynchronous path.
    pub deadline_ms: u64,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            max_batch: 8,
            max_delay_ms: 5,
            queue_capacity: 64,
            deadline_ms: 60_000,
        }
    }
}

/// What one image got back from its model.
#[derive(Debug, Clone, PartialEq)]
pub struct Inference {
    /// Scores (and heatmaps, if the model has them), activations applied.
    pub output: ImageOutput,
    /// Occlusion-sensitivity maps (`labels × grid × grid`), when asked for
    /// and the model has no heatmap output.
    pub occlusion: Option<Vec<f32>>,
    /// Time spent queued before its batch started.
    pub queue: Duration,
    /// Time of the batch's inference (plus occlusion, if any).
    pub inference: Duration,
    /// How many images shared the batch.
    pub batch_size: usize,
}

/// Counters of a model's batcher.
#[derive(Debug, Default)]
pub struct BatchStats {
    runs: AtomicU64,
    images: AtomicU64,
    skipped: AtomicU64,
    panics: AtomicU64,
}

impl BatchStats {
    /// Inference runs (batches) so far.
    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }
    /// Images inferred so far.
    pub fn images(&self) -> u64 {
        self.images.load(Ordering::Relaxed)
    }
    /// Requests dropped because their caller had gone.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }
    /// Batches whose backend panicked.
    pub fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }
}

struct Job {
    input: Vec<f32>,
    occlusion: bool,
    reply: oneshot::Sender<Result<Inference, EngineError>>,
    enqueued: Instant,
}

/// The handle to a model's batching thread.
pub struct Batcher {
    sender: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<BatchStats>,
    depth: Arc<AtomicU64>,
    healthy: Arc<AtomicBool>,
}

impl Batcher {
    /// Starts the thread that owns `backend`.
    pub fn spawn(
        mut backend: Box<dyn Backend>,
        settings: BatchSettings,
        occlusion: OcclusionSettings,
    ) -> Batcher {
        let max_batch = settings
            .max_batch
            .max(1)
            .min(backend.max_batch().unwrap_or(usize::MAX));
        let (sender, receiver) = mpsc::sync_channel::<Job>(settings.queue_capacity.max(1));
        let stats = Arc::new(BatchStats::default());
        let depth = Arc::new(AtomicU64::new(0));
        let max_delay = Duration::from_millis(settings.max_delay_ms);
        let thread_stats = Arc::clone(&stats);
        let thread_depth = Arc::clone(&depth);
        let healthy = Arc::new(AtomicBool::new(true));
        let thread_healthy = Arc::clone(&healthy);
        let name = format!("batch-{}", backend.model_id());
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                while let Ok(first) = receiver.recv() {
                    thread_depth.fetch_sub(1, Ordering::Relaxed);
                    let deadline = first.enqueued + max_delay;
                    let mut batch = vec![first];
                    while batch.len() < max_batch {
                        let wait = deadline.saturating_duration_since(Instant::now());
                        match receiver.recv_timeout(wait) {
                            Ok(job) => {
                                thread_depth.fetch_sub(1, Ordering::Relaxed);
                                batch.push(job);
                            }
                            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                                break
                            }
                        }
                    }
                    let before = batch.len();
                    batch.retain(|job| !job.reply.is_closed());
                    thread_stats
                        .skipped
                        .fetch_add((before - batch.len()) as u64, Ordering::Relaxed);
                    if !batch.is_empty() {
                        run_batch(
                            backend.as_mut(),
                            batch,
                            &occlusion,
                            max_batch,
                            (&thread_stats, &thread_healthy),
                        );
                    }
                }
            })
            .expect("spawning a thread");
        Batcher {
            sender: Some(sender),
            thread: Some(thread),
            stats,
            depth,
            healthy,
        }
    }

    /// False once the backend has panicked: the batcher still answers (each
    /// batch that panics fails its callers), but health checks should report
    /// the model as not serving.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Queues one preprocessed image; the receiver yields its inference.
    /// Refuses at once with [`EngineError::Overloaded`] when the queue is full.
    pub fn submit(
        &self,
        input: Vec<f32>,
        occlusion: bool,
    ) -> Result<oneshot::Receiver<Result<Inference, EngineError>>, EngineError> {
        let (reply, receiver) = oneshot::channel();
        let job = Job {
            input,
            occlusion,
            reply,
            enqueued: Instant::now(),
        };
        let sender = self.sender.as_ref().ok_or(EngineError::ShutDown)?;
        self.depth.fetch_add(1, Ordering::Relaxed);
        match sender.try_send(job) {
            Ok(()) => Ok(receiver),
            Err(TrySendError::Full(_)) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                Err(EngineError::Overloaded)
            }
            Err(TrySendError::Disconnected(_)) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                Err(EngineError::ShutDown)
            }
        }
    }

    /// Counters.
    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }

    /// Requests waiting in the queue now.
    pub fn queue_depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }
}

impl Drop for Batcher {
    /// Stops taking requests, lets the thread finish what is queued, joins it.
    fn drop(&mut self) {
        self.sender.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs one batch and answers its callers; a panicking backend is marked
/// unhealthy before they are answered.
fn run_batch(
    backend: &mut dyn Backend,
    batch: Vec<Job>,
    occlusion: &OcclusionSettings,
    max_batch: usize,
    (stats, healthy): (&BatchStats, &AtomicBool),
) {
    let started = Instant::now();
    let inputs: Vec<&[f32]> = batch.iter().map(|j| j.input.as_slice()).collect();
    let result = match std::panic::catch_unwind(AssertUnwindSafe(|| backend.predict(&inputs))) {
        Ok(result) => result,
        Err(_) => {
            stats.panics.fetch_add(1, Ordering::Relaxed);
            // Unhealthy before any caller hears of the failure.
            healthy.store(false, Ordering::Relaxed);
            Err(EngineError::Inference("the model backend panicked".into()))
        }
    };
    stats.runs.fetch_add(1, Ordering::Relaxed);
    stats
        .images
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    let batch_time = started.elapsed();
    let size = batch.len();
    metrics::histogram!("cxr_batch_size", "model" => backend.model_id().to_string())
        .record(size as f64);
    match result {
        Ok(outputs) if outputs.len() == size => {
            for (job, output) in batch.into_iter().zip(outputs) {
                let mut inference = batch_time;
                let maps = if job.occlusion && output.heatmaps.is_none() && !job.reply.is_closed() {
                    let t = Instant::now();
                    let maps = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        occlusion::maps(backend, &job.input, &output.scores, occlusion, max_batch)
                    }))
                    .unwrap_or_else(|_| {
                        stats.panics.fetch_add(1, Ordering::Relaxed);
                        healthy.store(false, Ordering::Relaxed);
                        Err(EngineError::Inference("the model backend panicked".into()))
                    });
                    inference += t.elapsed();
                    match maps {
                        Ok(m) => Some(m),
                        Err(e) => {
                            let _ = job.reply.send(Err(e));
                            continue;
                        }
                    }
                } else {
                    None
                };
                let _ = job.reply.send(Ok(Inference {
                    output,
                    occlusion: maps,
                    queue: started.saturating_duration_since(job.enqueued),
                    inference,
                    batch_size: size,
                }));
            }
        }
        Ok(outputs) => {
            let e = EngineError::Inference(format!(
                "the backend answered {} outputs for a batch of {size}",
                outputs.len()
            ));
            tracing::error!(model = %backend.model_id(), error = %e, "batch inference failed");
            for job in batch {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
        Err(e) => {
            tracing::error!(model = %backend.model_id(), error = %e, "batch inference failed");
            for job in batch {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The batcher against an in-memory backend (below the seam under
    //! test): batching, overload, abandoned callers, drain on shutdown and
    //! a panicking backend, in milliseconds. Real ONNX Runtime is tested in
    //! the engine's own tests.
    use super::*;
    use crate::preprocess::{InputSpec, Interpolation, Layout, Normalization, ResizeMode};
    use std::sync::Mutex;

    /// Scores each image with its first value; records batch sizes; can be
    /// told to sleep, fail or panic.
    struct FakeBackend {
        batches: Arc<Mutex<Vec<usize>>>,
        delay: Duration,
        panic_on: Option<f32>,
    }

    impl Backend for FakeBackend {
        fn model_id(&self) -> &str {
            "fake"
        }
        fn input_spec(&self) -> InputSpec {
            InputSpec {
                width: 2,
                height: 2,
                channels: 1,
                layout: Layout::Nchw,
                resize: ResizeMode::Stretch,
                interpolation: Interpolation::Bilinear,
                normalization: Normalization::ZeroOne,
            }
        }
        fn predict(&mut self, batch: &[&[f32]]) -> Result<Vec<ImageOutput>, EngineError> {
            std::thread::sleep(self.delay);
            if batch.iter().any(|i| Some(i[0]) == self.panic_on) {
                panic!("fake backend told to panic");
            }
            self.batches.lock().unwrap().push(batch.len());
            Ok(batch
                .iter()
                .map(|i| ImageOutput {
                    scores: vec![i[0]],
                    heatmaps: None,
                })
                .collect())
        }
    }

    fn batcher(
        max_batch: usize,
        max_delay_ms: u64,
        queue_capacity: usize,
        delay: Duration,
        panic_on: Option<f32>,
    ) -> (Batcher, Arc<Mutex<Vec<usize>>>) {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let backend = FakeBackend {
            batches: Arc::clone(&batches),
            delay,
            panic_on,
        };
        let settings = BatchSettings {
            max_batch,
            max_delay_ms,
            queue_capacity,
            ..BatchSettings::default()
        };
        (
            Batcher::spawn(Box::new(backend), settings, OcclusionSettings::default()),
            batches,
        )
    }

    fn input(v: f32) -> Vec<f32> {
        vec![v; 4]
    }

    #[test]
    fn concurrent_requests_share_batches_and_get_their_own_answers() {
        let (b, batches) = batcher(4, 50, 64, Duration::ZERO, None);
        let receivers: Vec<_> = (0..8)
            .map(|i| b.submit(input(i as f32), false).unwrap())
            .collect();
        for (i, r) in receivers.into_iter().enumerate() {
            let inference = r.blocking_recv().unwrap().unwrap();
            assert_eq!(inference.output.scores, vec![i as f32]);
            assert!(inference.batch_size <= 4);
        }
        let sizes = batches.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 8);
        assert!(
            sizes.len() <= 4,
            "8 queued requests in batches of 4: {sizes:?}"
        );
        assert_eq!(b.stats().images(), 8);
    }

    #[test]
    fn a_full_queue_refuses_at_once() {
        let (b, _) = batcher(1, 0, 2, Duration::from_millis(200), None);
        let mut accepted = Vec::new();
        let mut refused = 0;
        for i in 0..6 {
            match b.submit(input(i as f32), false) {
                Ok(r) => accepted.push(r),
                Err(EngineError::Overloaded) => refused += 1,
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert!(
            refused >= 3,
            "queue of 2 (+1 running) took {} of 6",
            accepted.len()
        );
        for r in accepted {
            assert!(r.blocking_recv().unwrap().is_ok());
        }
    }

    #[test]
    fn abandoned_callers_are_skipped_before_inference() {
        let (b, batches) = batcher(1, 0, 16, Duration::from_millis(100), None);
        let first = b.submit(input(1.0), false).unwrap();
        // Queued behind the first (which takes 100 ms), then abandoned.
        let gone: Vec<_> = (0..3)
            .map(|_| b.submit(input(2.0), false).unwrap())
            .collect();
        drop(gone);
        assert!(first.blocking_recv().unwrap().is_ok());
        let last = b.submit(input(3.0), false).unwrap();
        assert!(last.blocking_recv().unwrap().is_ok());
        assert_eq!(b.stats().skipped(), 3);
        assert_eq!(batches.lock().unwrap().iter().sum::<usize>(), 2);
    }

    #[test]
    fn dropping_the_batcher_drains_the_queue() {
        let (b, batches) = batcher(2, 0, 16, Duration::from_millis(20), None);
        let receivers: Vec<_> = (0..6)
            .map(|i| b.submit(input(i as f32), false).unwrap())
            .collect();
        drop(b);
        for r in receivers {
            assert!(
                r.blocking_recv().unwrap().is_ok(),
                "queued work finishes on shutdown"
            );
        }
        assert_eq!(batches.lock().unwrap().iter().sum::<usize>(), 6);
    }

    #[test]
    fn a_panicking_backend_fails_its_batch_and_keeps_serving() {
        let (b, _) = batcher(1, 0, 16, Duration::ZERO, Some(13.0));
        let bad = b.submit(input(13.0), false).unwrap();
        match bad.blocking_recv().unwrap() {
            Err(EngineError::Inference(m)) => assert!(m.contains("panicked")),
            other => panic!("expected an inference error, got {other:?}"),
        }
        assert!(!b.healthy());
        assert_eq!(b.stats().panics(), 1);
        let good = b.submit(input(1.0), false).unwrap();
        assert_eq!(
            good.blocking_recv().unwrap().unwrap().output.scores,
            vec![1.0]
        );
    }
}
