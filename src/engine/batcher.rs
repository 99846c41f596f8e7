//! Dynamic batching: one thread per model owns its session and drains a
//! bounded queue into batches of at most `max_batch` images, waiting at most
//! `max_delay` after the oldest request for company. A full queue refuses at
//! once (the API maps that to RESOURCE_EXHAUSTED); a request whose caller has
//! gone away is dropped before it costs an inference.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use super::occlusion::{self, OcclusionSettings};
use super::session::{ImageOutput, ModelSession};
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
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings {
            max_batch: 8,
            max_delay_ms: 5,
            queue_capacity: 64,
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
}

impl Batcher {
    /// Starts the thread that owns `session`.
    pub fn spawn(
        mut session: ModelSession,
        settings: BatchSettings,
        occlusion: OcclusionSettings,
    ) -> Batcher {
        let max_batch = settings
            .max_batch
            .max(1)
            .min(session.fixed_batch.unwrap_or(usize::MAX));
        let (sender, receiver) = mpsc::sync_channel::<Job>(settings.queue_capacity.max(1));
        let stats = Arc::new(BatchStats::default());
        let depth = Arc::new(AtomicU64::new(0));
        let max_delay = Duration::from_millis(settings.max_delay_ms);
        let thread_stats = Arc::clone(&stats);
        let thread_depth = Arc::clone(&depth);
        let name = format!("batch-{}", session.manifest.model.id);
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
                        run_batch(&mut session, batch, &occlusion, max_batch, &thread_stats);
                    }
                }
            })
            .expect("spawning a thread");
        Batcher {
            sender: Some(sender),
            thread: Some(thread),
            stats,
            depth,
        }
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

fn run_batch(
    session: &mut ModelSession,
    batch: Vec<Job>,
    occlusion: &OcclusionSettings,
    max_batch: usize,
    stats: &BatchStats,
) {
    let started = Instant::now();
    let inputs: Vec<&[f32]> = batch.iter().map(|j| j.input.as_slice()).collect();
    let result = session.run(&inputs);
    stats.runs.fetch_add(1, Ordering::Relaxed);
    stats
        .images
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    let batch_time = started.elapsed();
    let size = batch.len();
    metrics::histogram!("cxr_batch_size", "model" => session.manifest.model.id.clone())
        .record(size as f64);
    match result {
        Ok(outputs) => {
            for (job, output) in batch.into_iter().zip(outputs) {
                let mut inference = batch_time;
                let maps = if job.occlusion && output.heatmaps.is_none() && !job.reply.is_closed() {
                    let t = Instant::now();
                    let maps =
                        occlusion::maps(session, &job.input, &output.scores, occlusion, max_batch);
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
        Err(e) => {
            tracing::error!(model = %session.manifest.model.id, error = %e, "batch inference failed");
            for job in batch {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }
}
