//! One PostgreSQL connection owned by a thread of its own, for callers on
//! both async and blocking threads (the synchronous client must not run on
//! an async runtime's threads: it blocks on a runtime of its own). Each
//! call runs a closure on that thread with a live connection, made again if
//! the last one broke; `S` is per-connection state (e.g. a session lock
//! held), reset to its default with each new connection. The outboxes of
//! `cxr-pacs` and `cxr-ris` use it.

use std::sync::{mpsc, Mutex};

use postgres::Client;

type Job<S> = Box<dyn FnOnce(&mut Option<Client>, &mut S) + Send>;

/// The thread and its connection.
pub struct PgThread<S> {
    jobs: Mutex<mpsc::Sender<Job<S>>>,
    url: String,
}

impl<S: Default + Send + 'static> PgThread<S> {
    /// Starts the thread `name` for the database at `url` (connected at the
    /// first call). The thread, and its connection, end when this is
    /// dropped.
    pub fn spawn(name: &str, url: &str) -> Result<PgThread<S>, String> {
        let (tx, rx) = mpsc::channel::<Job<S>>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let (mut client, mut state) = (None, S::default());
                for job in rx {
                    job(&mut client, &mut state);
                }
            })
            .map_err(|e| format!("{name} thread: {e}"))?;
        Ok(PgThread {
            jobs: Mutex::new(tx),
            url: url.to_string(),
        })
    }

    /// Runs `f` on the thread with a live connection; errors as text
    /// (connecting, or `f`'s).
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Client, &mut S) -> Result<T, postgres::Error> + Send + 'static,
    ) -> Result<T, String> {
        let (tx, rx) = mpsc::sync_channel(1);
        let url = self.url.clone();
        let job: Job<S> = Box::new(move |slot: &mut Option<Client>, state: &mut S| {
            if slot.as_ref().is_none_or(Client::is_closed) {
                *state = S::default();
                match crate::connect_postgres(&url) {
                    Ok(c) => *slot = Some(c),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
            let Some(client) = slot.as_mut() else {
                return;
            };
            let result = f(client, state).map_err(|e| e.to_string());
            if client.is_closed() {
                *slot = None;
                *state = S::default();
            }
            let _ = tx.send(result);
        });
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| "the database thread is gone".to_string())?;
        rx.recv()
            .map_err(|_| "the database thread is gone".to_string())?
    }
}
