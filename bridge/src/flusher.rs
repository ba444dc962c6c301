//! Group commit: one thread owns every `flush()` of the store. Writers ask for a flush and wait;
//! the flusher takes every request that is waiting, flushes once, and answers them all. Under load
//! the time one flush takes is the window in which the next batch gathers, so durability costs
//! one flush per batch, not per message. (sled 0.34.7 deadlocks with concurrent `flush_async`,
//! so no other code may flush while the bridge runs.)

use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Arc;
use std::time::Instant;

use chat_store::Store;
use tracing::{error, warn};

use crate::BridgeStats;

type Waiter = SyncSender<Result<(), String>>;

/// A cloneable handle to ask for a durable flush.
#[derive(Clone)]
pub struct Flusher {
    tx: Sender<Waiter>,
}

impl Flusher {
    /// Starts the flusher thread, which records each flush's duration in
    /// `stats.flush_latency`. It ends when every handle is dropped.
    pub fn start(store: Store, stats: Arc<BridgeStats>) -> std::io::Result<Flusher> {
        let (tx, rx) = channel::<Waiter>();
        std::thread::Builder::new()
            .name("chat-flusher".into())
            .spawn(move || run(store, rx, stats))?;
        Ok(Flusher { tx })
    }

    /// Blocks until everything this thread wrote before the call is on disk. For worker
    /// threads only; never call it on the async runtime.
    pub fn flush(&self) -> Result<(), String> {
        let (tx, rx) = sync_channel(1);
        self.tx.send(tx).map_err(|_| "flusher stopped".to_owned())?;
        rx.recv().map_err(|_| "flusher stopped".to_owned())?
    }
}

fn run(store: Store, rx: Receiver<Waiter>, stats: Arc<BridgeStats>) {
    let mut waiting = Vec::new();
    while let Ok(first) = rx.recv() {
        waiting.push(first);
        waiting.extend(rx.try_iter());
        let started = Instant::now();
        let result = store.flush().map_err(|e| e.to_string());
        if let Err(e) = &result {
            error!(error = %e, "store flush failed");
        }
        let took = started.elapsed();
        stats.flush_latency.observe(took);
        if took.as_millis() > 100 {
            warn!(
                ms = took.as_millis() as u64,
                batch = waiting.len(),
                "slow store flush"
            );
        }
        for waiter in waiting.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }
}
