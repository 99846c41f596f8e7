//! The loop that empties the outbox into the destination: whenever objects
//! are released or a retry comes due, one association carries a batch;
//! each confirmation is committed before the next object is sent.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::outbox::{Entry, Outbox};
use super::outbox_pg::LEASE_RENEW_MS;
use super::scu::{self, Delivery, StoreScu};
use cxr_worklist::now_ms;

/// Objects per association.
const BATCH: usize = 64;
/// Longest sleep between looks at the outbox.
const IDLE: Duration = Duration::from_secs(5);

/// Sends due outbox objects until `stop`.
pub async fn run(
    outbox: Arc<Outbox>,
    scu: StoreScu,
    released: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        publish_counts(&outbox).await;
        let due = {
            let outbox = Arc::clone(&outbox);
            tokio::task::spawn_blocking(move || outbox.due(now_ms(), BATCH)).await
        };
        let due = match due {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "outbox unreadable");
                Vec::new()
            }
            // A panic in the outbox must not end sending for good.
            Err(e) => {
                tracing::error!(error = %e, "outbox read failed");
                Vec::new()
            }
        };
        if due.is_empty() {
            let wait = {
                let outbox = Arc::clone(&outbox);
                tokio::task::spawn_blocking(move || outbox.next_due_in(now_ms()))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten()
                    .map(|ms| Duration::from_millis(ms as u64 + 1).min(IDLE))
                    .unwrap_or(IDLE)
            };
            tokio::select! {
                () = released.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        // The shared outbox leased the batch to this replica for a short
        // while: renewed as long as it is being sent, so a PACS slower
        // than the lease is not sent the same object twice, and a replica
        // killed mid-batch strands nothing for long.
        let renewer = outbox.is_shared().then(|| {
            tokio::spawn(renew_leases(
                Arc::clone(&outbox),
                due.iter().map(|e| e.id).collect(),
            ))
        });
        send_batch(&outbox, &scu, due, &mut stop).await;
        if let Some(renewer) = renewer {
            renewer.abort();
        }
    }
}

/// Renews this replica's lease on the batch `ids` every
/// [`LEASE_RENEW_MS`] until aborted (when the batch is done).
async fn renew_leases(outbox: Arc<Outbox>, ids: Vec<i64>) {
    let ids = Arc::new(ids);
    loop {
        tokio::time::sleep(Duration::from_millis(LEASE_RENEW_MS as u64)).await;
        let (outbox, ids) = (Arc::clone(&outbox), Arc::clone(&ids));
        match tokio::task::spawn_blocking(move || outbox.renew_leases(&ids, now_ms())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "outbox leases not renewed"),
            Err(_) => return,
        }
    }
}

async fn send_batch(
    outbox: &Arc<Outbox>,
    scu: &StoreScu,
    due: Vec<Entry>,
    stop: &mut watch::Receiver<bool>,
) {
    let mut classes: Vec<String> = due.iter().map(|e| e.sop_class_uid.clone()).collect();
    classes.sort();
    classes.dedup();
    let mut association = match scu.connect(&classes).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(destination = %scu.destination, error = %e, objects = due.len(), "results not sent; will retry");
            let outbox = Arc::clone(outbox);
            let result =
                tokio::task::spawn_blocking(move || outbox.mark_all_failed(&due, &e, now_ms()))
                    .await;
            if let Ok(Err(e)) = result {
                tracing::error!(error = %e, "outbox state not recorded");
            }
            return;
        }
    };
    let mut sent = 0;
    for (i, entry) in due.iter().enumerate() {
        if *stop.borrow() {
            break;
        }
        let message_id = (i % usize::from(u16::MAX)) as u16 + 1;
        let object = match &entry.data {
            Some(bytes) => scu::Object::Bytes(bytes),
            None => scu::Object::File(&entry.path),
        };
        let delivery = StoreScu::store(&mut association, message_id, object).await;
        match delivery {
            Delivery::Stored { status } => {
                if status != 0 {
                    tracing::info!(
                        item = entry.id,
                        status = format!("0x{status:04X}"),
                        "result stored with a warning"
                    );
                }
                record(outbox, entry, Ok(())).await;
                metrics::counter!("cxr_dicom_results_sent_total", "kind" => entry.kind.clone())
                    .increment(1);
                sent += 1;
            }
            Delivery::Failed(e) => {
                tracing::warn!(item = entry.id, kind = %entry.kind, error = %e, "result not stored; will retry");
                record(outbox, entry, Err(e)).await;
                metrics::counter!("cxr_dicom_results_failed_total", "kind" => entry.kind.clone())
                    .increment(1);
            }
            Delivery::Broken(e) => {
                tracing::warn!(item = entry.id, kind = %entry.kind, error = %e, "association lost; will retry");
                record(outbox, entry, Err(e)).await;
                metrics::counter!("cxr_dicom_results_failed_total", "kind" => entry.kind.clone())
                    .increment(1);
                let _ = association.abort().await;
                return;
            }
        }
    }
    let _ = association.release().await;
    tracing::info!(destination = %scu.destination, sent, of = due.len(), "results sent");
}

/// Commits a delivery's outcome (blocking work off the async threads).
async fn record(outbox: &Arc<Outbox>, entry: &Entry, outcome: Result<(), String>) {
    let outbox = Arc::clone(outbox);
    let entry = entry.clone();
    let result = tokio::task::spawn_blocking(move || match outcome {
        Ok(()) => outbox.mark_sent(&entry, now_ms()),
        Err(e) => outbox.mark_failed(&entry, &e, now_ms()),
    })
    .await;
    if let Ok(Err(e)) = result {
        tracing::error!(error = %e, "outbox state not recorded");
    }
}

async fn publish_counts(outbox: &Arc<Outbox>) {
    let outbox = Arc::clone(outbox);
    if let Ok(Ok(c)) = tokio::task::spawn_blocking(move || outbox.counts()).await {
        for (state, n) in [
            ("held", c.held),
            ("ready", c.ready),
            ("sent", c.sent),
            ("failed", c.failed),
        ] {
            metrics::gauge!("cxr_dicom_outbox_objects", "state" => state).set(n as f64);
        }
    }
}
