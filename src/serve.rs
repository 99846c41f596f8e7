//! `serve`'s wiring, the one place where the parts meet: the worklist
//! store, the pipeline, engine warm-up in the background (health turns
//! SERVING only when the models are warm), gRPC with health and reflection,
//! PACS, Prometheus metrics, graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::config::ServiceConfig;
use cxr_api::{pb, Admitted, TriageApi, TriageServer};
use cxr_ingest::IngestLimits;
use cxr_model::Engine;
use cxr_pipeline::{Analyzer, Pipeline};
use cxr_worklist::WorklistStore;

/// Runs the service on `listener` until `shutdown` completes (or the models
/// fail to load). In-flight requests finish before it returns.
pub async fn run(
    config: ServiceConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    check_exposure(&config)?;
    let auth = Arc::new(
        cxr_auth::Authenticator::new(&config.auth).context("authentication configuration")?,
    );
    protect_data_dir(&config.data_dir)?;
    let decoder = cxr_pipeline::jpeg2000::install(&config.decode)?;
    metrics::gauge!("cxr_jpeg2000_decoder_info", "decoder" => decoder.name.clone()).set(1.0);
    // The PostgreSQL client blocks: open it off the async threads.
    let store: Arc<dyn WorklistStore> = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || config.open_worklist(true))
            .await
            .context("opening the worklist")??
    };
    tracing::info!(
        worklist = %crate::config::redact_url(&config.worklist_url()),
        "worklist store open"
    );
    let pipeline = Arc::new(Pipeline::new(
        Arc::clone(&store),
        config.limits.max_concurrent_analyses,
    ));
    // Results to the RIS and EHR (HL7 v2 over MLLP, FHIR R4): queued with
    // each commit, from the first analysis on (the PACS spool resumes
    // below).
    let (_results_out_stop, results_out_stopping) = tokio::sync::watch::channel(false);
    let worklist_url = config.worklist_url();
    let results_out = cxr_ris::ResultsOut::start(
        &config.hl7,
        &config.fhir,
        &config.data_dir,
        config
            .worklist_is_postgres()
            .then_some(worklist_url.as_str()),
        results_out_stopping,
    )
    .await
    .context("results to the RIS/EHR ([hl7], [fhir])")?;
    for (interface, _) in &results_out.outboxes {
        tracing::info!(interface, "results to the hospital's systems");
    }
    if let Some(address) = results_out.order_address {
        tracing::info!(%address, "taking the RIS's orders (HL7 ORM^O01, OMI^O23 over MLLP)");
    }
    for sink in results_out.sinks {
        pipeline.add_sink(sink);
    }
    // A worklist other replicas also write (PostgreSQL): their commits wake
    // this replica's watchers too. The pipeline is held weakly so that the
    // listening thread ends with it.
    let weak = Arc::downgrade(&pipeline);
    if store.watch_commits(Arc::new(move |sequence| {
        weak.upgrade().is_some_and(|p| {
            p.publish(cxr_worklist::Event {
                sequence,
                kind: cxr_worklist::EventKind::ImageStored,
                study_instance_uid: String::new(),
                sop_instance_uid: String::new(),
                at_ms: cxr_worklist::now_ms(),
            });
            true
        })
    })) {
        tracing::info!("following commits of other replicas (LISTEN/NOTIFY)");
    }

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_not_serving::<TriageServer<TriageApi>>().await;
    health
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    // Reflection in both versions: `v1`, and `v1alpha` for the tools that
    // speak only that (grpcurl 1.8, still what several distributions ship).
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("reflection service")?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .context("reflection service (v1alpha)")?;

    // Models load and warm up in the background; the port is open (health
    // NOT_SERVING, Analyze UNAVAILABLE) meanwhile.
    let (failed_tx, failed_rx) = tokio::sync::oneshot::channel::<anyhow::Error>();
    {
        let pipeline = Arc::clone(&pipeline);
        let health = health.clone();
        let engine_config = config.engine.clone();
        let policy = config.priority.clone();
        let reduce = config.decode.jpeg2000_reduce;
        tokio::spawn(async move {
            match tokio::task::spawn_blocking(move || Engine::load(&engine_config)).await {
                Ok(Ok(engine)) => {
                    for m in engine.models() {
                        metrics::gauge!("cxr_model_info", "model" => m.id.clone(), "version" => m.version.clone(), "provider" => m.provider.as_str()).set(1.0);
                        tracing::info!(model = %m.id, version = %m.version, provider = %m.provider, warmup_ms = m.warmup_ms, "model serving");
                    }
                    pipeline.set_analyzer(Arc::new(
                        Analyzer::new(Arc::new(engine), policy, IngestLimits::default())
                            .reducing_jpeg2000(reduce),
                    ));
                    health.set_serving::<TriageServer<TriageApi>>().await;
                    health
                        .set_service_status("", tonic_health::ServingStatus::Serving)
                        .await;
                    tracing::info!("models warm; SERVING");
                }
                Ok(Err(e)) => {
                    let _ = failed_tx.send(anyhow::anyhow!("loading models: {e}"));
                }
                Err(e) => {
                    let _ = failed_tx.send(anyhow::anyhow!("loading models: {e}"));
                }
            }
        });
    }

    // Gauges that are read, not counted: queue depth, worklist by priority.
    {
        let pipeline = Arc::clone(&pipeline);
        let max = config.limits.max_concurrent_analyses;
        let health = health.clone();
        tokio::spawn(async move {
            let mut unhealthy_reported = false;
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                if let Some(engine) = pipeline.engine() {
                    metrics::gauge!("cxr_queue_depth").set(engine.queue_depth() as f64);
                    // A model whose backend panicked cannot be trusted to
                    // infer: health says so, so that a load balancer or an
                    // orchestrator moves traffic away or restarts us.
                    if !engine.healthy() && !unhealthy_reported {
                        unhealthy_reported = true;
                        tracing::error!("a model's backend panicked; health NOT_SERVING");
                        health.set_not_serving::<TriageServer<TriageApi>>().await;
                        health
                            .set_service_status("", tonic_health::ServingStatus::NotServing)
                            .await;
                    }
                }
                metrics::gauge!("cxr_analyses_in_flight").set(pipeline.in_flight(max) as f64);
                let store = Arc::clone(pipeline.store());
                if let Ok(Ok(counts)) =
                    tokio::task::spawn_blocking(move || store.open_counts()).await
                {
                    for p in [
                        cxr_findings::priority::Priority::Critical,
                        cxr_findings::priority::Priority::Urgent,
                        cxr_findings::priority::Priority::NotAnalyzed,
                        cxr_findings::priority::Priority::Routine,
                    ] {
                        let n = counts.iter().find(|c| c.0 == p).map(|c| c.1).unwrap_or(0);
                        metrics::gauge!("cxr_worklist_open_studies", "priority" => p.as_str())
                            .set(n as f64);
                    }
                }
            }
        });
    }

    // The audit trail to a syslog collector, when configured.
    if let Some(target) = &config.audit.syslog {
        let target: crate::syslog::Target = target
            .parse()
            .map_err(|e| anyhow::anyhow!("audit.syslog: {e}"))?;
        tracing::info!(?target, "audit trail exported to syslog");
        tokio::spawn(crate::syslog::export(
            Arc::clone(pipeline.store()),
            target,
            config.data_dir.join("audit-syslog.seq"),
        ));
    }

    // Retention: once at start and then daily.
    if config.retention.days > 0 {
        let policy = config.retention.clone();
        let store = Arc::clone(pipeline.store());
        let pacs_state = config.dicom.state_dir(&config.data_dir);
        let shared_outbox = config.worklist_is_postgres().then(|| config.worklist_url());
        let data_dir = config.data_dir.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(86_400));
            loop {
                tick.tick().await;
                let store = Arc::clone(&store);
                let retention = policy.clone();
                let pacs_state = pacs_state.clone();
                let shared_outbox = shared_outbox.clone();
                let data_dir = data_dir.clone();
                let purged = tokio::task::spawn_blocking(move || {
                    let cutoff = retention.cutoff_ms(cxr_worklist::now_ms());
                    if let Some(c) = cutoff {
                        match cxr_ris::purge(&data_dir, shared_outbox.as_deref(), c) {
                            Ok(p) => tracing::info!(
                                messages_sent = p.sent_messages,
                                orders = p.orders,
                                "retention purge (RIS/EHR messages and orders)"
                            ),
                            Err(e) => {
                                tracing::error!(error = %e, "retention purge of RIS/EHR messages failed")
                            }
                        }
                    }
                    if let (Some(c), Some(url)) = (cutoff, &shared_outbox) {
                        match cxr_pacs::purge_shared_outbox(url, c) {
                            Ok(n) => tracing::info!(outbox_sent = n, "retention purge (shared outbox)"),
                            Err(e) => {
                                tracing::error!(error = %e, "retention purge of the shared outbox failed")
                            }
                        }
                    }
                    if let Some(c) = cutoff {
                        match cxr_pacs::purge(&pacs_state, c) {
                            Ok(p) => tracing::info!(
                                outbox_sent = p.sent_rows,
                                rejected = p.rejected_files,
                                "retention purge (DICOM state)"
                            ),
                            Err(e) => {
                                tracing::error!(error = %e, "retention purge of DICOM state failed")
                            }
                        }
                    }
                    cutoff.map(|c| store.purge(c, retention.results))
                })
                .await;
                match purged {
                    Ok(Some(Ok(p))) => tracing::info!(
                        previews = p.previews,
                        heatmaps = p.heatmaps,
                        events = p.events,
                        images = p.images,
                        studies = p.studies,
                        "retention purge"
                    ),
                    Ok(Some(Err(e))) => tracing::error!(error = %e, "retention purge failed"),
                    _ => {}
                }
            }
        });
    }

    // DICOM listener and results back to PACS, when `[dicom] enabled`.
    let stow_tls = config.tls.as_ref().map(|t| cxr_pacs::stow::TlsFiles {
        cert: t.cert.clone(),
        key: t.key.clone(),
        client_ca: t.client_ca.clone(),
    });
    // With a PostgreSQL worklist the results waiting for PACS are there
    // too, so that any replica can send them.
    let shared_outbox = config.worklist_is_postgres().then(|| config.worklist_url());
    let pacs = cxr_pacs::Pacs::start_with_outbox(
        &config.dicom,
        &config.data_dir,
        Arc::clone(&pipeline),
        Arc::clone(&auth),
        stow_tls.as_ref(),
        shared_outbox.as_deref(),
    )
    .await?;

    let max_message = config.limits.max_message_mib << 20;
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let api = TriageApi::new(Arc::clone(&pipeline), config.limits.max_stream_mib << 20)
        .with_watch_limits(config.limits.max_watchers, stopping);
    let triage = TriageServer::new(api)
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);

    // HTTP/2's default 64 KiB flow-control window makes a 10-30 MB upload
    // wait on hundreds of window updates; the adaptive window grows it to
    // the link's bandwidth-delay product.
    let mut builder = Server::builder()
        .timeout(Duration::from_secs(config.limits.request_timeout_s))
        .http2_adaptive_window(Some(true));
    if let Some(tls) = &config.tls {
        let cert =
            std::fs::read(&tls.cert).with_context(|| format!("TLS cert {}", tls.cert.display()))?;
        let key =
            std::fs::read(&tls.key).with_context(|| format!("TLS key {}", tls.key.display()))?;
        let mut tls_config = ServerTlsConfig::new().identity(Identity::from_pem(cert, key));
        if let Some(ca) = &tls.client_ca {
            let ca =
                std::fs::read(ca).with_context(|| format!("TLS client CA {}", ca.display()))?;
            tls_config = tls_config.client_ca_root(Certificate::from_pem(ca));
        }
        builder = builder
            .tls_config(tls_config)
            .context("TLS configuration")?;
    }

    if let Some(web_addr) = config.web.listen {
        let web_listener = tokio::net::TcpListener::bind(web_addr)
            .await
            .with_context(|| format!("binding the web worklist {web_addr} (web.listen)"))?;
        let web_addr = web_listener.local_addr()?;
        let web_tls = match &stow_tls {
            Some(files) => {
                Some(cxr_pacs::stow::tls_acceptor_optional_client(files).context("web TLS")?)
            }
            None => None,
        };
        let scheme = if web_tls.is_some() { "https" } else { "http" };
        tracing::info!(addr = %web_addr, tls = web_tls.is_some(), "web worklist listening");
        eprintln!("cxr-triage web worklist on {scheme}://{web_addr}/");
        let web = Arc::new(
            cxr_web::Web::new(Arc::clone(&pipeline), Arc::clone(&auth), {
                let mut web = config.web.clone();
                web.campaigns
                    .get_or_insert_with(|| config.data_dir.join("campaigns"));
                web
            })
            .context("the web worklist ([web])")?,
        );
        tokio::spawn(cxr_web::serve(
            web_listener,
            web,
            web_tls,
            stopping_tx.subscribe(),
        ));
    }

    if let Some(health_addr) = config.health_listen {
        let health_listener = tokio::net::TcpListener::bind(health_addr)
            .await
            .with_context(|| format!("binding the health listener {health_addr}"))?;
        tracing::info!(addr = %health_addr, "gRPC health (plaintext, health only) listening");
        let only_health = health_service.clone();
        let mut stopping = stopping_tx.subscribe();
        tokio::spawn(async move {
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(health_listener);
            let stop = async move {
                let _ = stopping.wait_for(|s| *s).await;
            };
            if let Err(e) = Server::builder()
                .add_service(only_health)
                .serve_with_incoming_shutdown(incoming, stop)
                .await
            {
                tracing::error!(error = %e, "health listener failed");
            }
        });
    }
    let addr = listener.local_addr()?;
    tracing::info!(%addr, tls = config.tls.is_some(), "gRPC listening");
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<Option<anyhow::Error>>();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => { let _ = stop_tx.send(None); }
            Ok(e) = failed_rx => { let _ = stop_tx.send(Some(e)); }
        }
    });
    let (error_tx, mut error_rx) = tokio::sync::mpsc::channel::<anyhow::Error>(1);
    builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(
            Admitted::new(triage, Arc::clone(&pipeline), Arc::clone(&auth))
                .with_upload_idle(Duration::from_secs(config.limits.upload_idle_s))
                .with_peer_limit(config.limits.max_analyses_per_peer),
        )
        .serve_with_incoming_shutdown(incoming, async move {
            if let Ok(Some(e)) = stop_rx.await {
                let _ = error_tx.send(e).await;
            }
            // Open worklist watches end now, so that they do not hold the
            // shutdown up.
            let _ = stopping_tx.send(true);
            tracing::info!("shutting down: finishing in-flight requests");
        })
        .await
        .context("gRPC server")?;
    if let Some(pacs) = pacs {
        pacs.shutdown().await;
    }
    // The engine's batchers finish their queues when the pipeline drops.
    drop(pipeline);
    if let Ok(e) = error_rx.try_recv() {
        return Err(e);
    }
    tracing::info!("stopped");
    Ok(())
}

/// Refuses to serve patient data to the network unprotected: a gRPC
/// listener beyond loopback needs TLS and authentication, unless the site
/// says `auth.insecure = true` (logged as a warning).
fn check_exposure(config: &ServiceConfig) -> anyhow::Result<()> {
    let listen = config.listen;
    let exposed = !listen.ip().is_loopback();
    let protected = config.tls.is_some() && config.auth.enabled;
    // STOW-RS beyond loopback: the same rule (it is HTTPS with `[tls]`).
    if let Some(stow) = config.dicom.stow_listen.filter(|_| config.dicom.enabled) {
        if !stow.ip().is_loopback() && !protected && !config.auth.insecure {
            anyhow::bail!(
                "STOW-RS on {stow} without TLS and authentication would let anyone on the network read \
                 and file images: configure [tls] and [auth] (docs/security.md), or set \
                 auth.insecure = true to accept the risk"
            );
        }
    }
    // The web worklist beyond loopback: HTTPS and someone to sign in.
    if config.web.listen.is_some() && config.web.oidc.is_some() && config.auth.tokens.is_none() {
        anyhow::bail!(
            "[web.oidc] needs [auth.tokens] (the provider's issuer, keys and roles claim) to \
             verify the ID tokens it receives (docs/security.md)"
        );
    }
    if let Some(web) = config.web.listen {
        let signed =
            config.auth.enabled || !config.web.users.is_empty() || config.web.oidc.is_some();
        let allowed =
            web.ip().is_loopback() || config.auth.insecure || (config.tls.is_some() && signed);
        if !allowed {
            anyhow::bail!(
                "the web worklist on {web} without TLS and sign-in would show patient data to \
                 the network: configure [tls] and [[web.users]] or [auth] (docs/security.md), \
                 or set auth.insecure = true to accept the risk"
            );
        }
    }
    if !exposed || protected {
        return Ok(());
    }
    if config.auth.insecure {
        tracing::warn!(
            %listen,
            tls = config.tls.is_some(),
            auth = config.auth.enabled,
            "serving beyond loopback without TLS and authentication (auth.insecure): anyone who reaches the port can read and change the worklist"
        );
        return Ok(());
    }
    anyhow::bail!(
        "listening on {listen} without TLS and authentication would expose patient data to the network: \
         configure [tls] and [auth] (docs/security.md), or set auth.insecure = true to accept the risk"
    )
}

/// Creates the data directory and makes it the service user's alone
/// (0700), also when an earlier version left it open: what is inside —
/// worklist, spool, outbox — is patient data.
fn protect_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("restricting {} to its owner", dir.display()))?;
    Ok(())
}

/// Installs the Prometheus exporter on `addr` (HTTP `/metrics`).
pub fn install_metrics(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .set_buckets(&[
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ])
        .context("metrics buckets")?
        .install()
        .with_context(|| format!("metrics listener on {addr}"))?;
    Ok(())
}

/// Publishes the process's own memory figures from `/proc/self/status`
/// every second: `process_resident_memory_bytes` (VmRSS) and
/// `process_resident_memory_peak_bytes` (VmHWM, the high-water mark), so an
/// operator — and the attack tests — see what a load cost at its worst.
pub async fn report_memory() {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
            return;
        };
        let kib = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        };
        if let Some(rss) = kib("VmRSS:") {
            metrics::gauge!("process_resident_memory_bytes").set(rss * 1024.0);
        }
        if let Some(peak) = kib("VmHWM:") {
            metrics::gauge!("process_resident_memory_peak_bytes").set(peak * 1024.0);
        }
    }
}
