//! Group commit: every `flush()` of the store goes through one [`Flusher`]. A writer that asks
//! for a flush while none is running flushes itself (no thread hop: on a busy machine each
//! wake-up of another thread can wait milliseconds for a core); writers that ask while a flush
//! runs wait for it to end, then one of them flushes once for all of them. Under load the time
//! one flush takes is the window in which the next batch gathers, so durability costs one
//! flush per batch, not per message. Flushes never overlap (sled 0.34.7 deadlocks with
//! concurrent `flush_async`, so no other code may flush while the bridge runs).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use chat_store::Store;
use tracing::{error, warn};

use crate::BridgeStats;

/// Failed flushes remembered, for waiters that wake up only after later flushes.
const FAILURES_KEPT: usize = 64;

/// Runs before every flush of the store; an `Err` fails that flush without flushing (as if the
/// node died before it). For tests that hold a flush or make it fail: see
/// [`Flusher::set_hook`].
pub type FlushHook = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// A cloneable handle to ask for a durable flush.
#[derive(Clone)]
pub struct Flusher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    stats: Arc<BridgeStats>,
    hook: Mutex<Option<FlushHook>>,
    state: Mutex<State>,
    done: Condvar,
}

/// Requests are numbered; a flush that starts after request `t` was made covers it.
#[derive(Default)]
struct State {
    /// The last request number given.
    requested: u64,
    /// Every request up to this one is covered by a finished flush.
    covered: u64,
    /// A flush is running.
    flushing: bool,
    /// Recent failed flushes: the requests each covered (`from..=to`) and the error.
    failures: VecDeque<(u64, u64, String)>,
}

impl State {
    /// The outcome for request `ticket`, once covered.
    fn outcome(&self, ticket: u64) -> Result<(), String> {
        let failed = self
            .failures
            .iter()
            .find(|(from, to, _)| (*from..=*to).contains(&ticket));
        match failed {
            Some((_, _, e)) => Err(e.clone()),
            // Older than every failure remembered (it may have been in one forgotten): a failure.
            None if self.failures.len() == FAILURES_KEPT
                && self
                    .failures
                    .front()
                    .is_some_and(|(from, _, _)| ticket < *from) =>
            {
                Err("store flush failed".to_owned())
            }
            None => Ok(()),
        }
    }
}

impl Flusher {
    /// A flusher for `store`, which records each flush's duration in `stats.flush_latency`.
    pub fn new(store: Store, stats: Arc<BridgeStats>) -> Flusher {
        Flusher {
            inner: Arc::new(Inner {
                store,
                stats,
                hook: Mutex::new(None),
                state: Mutex::new(State::default()),
                done: Condvar::new(),
            }),
        }
    }

    /// Makes durable every write a read saw, before its answer leaves the node: call it after
    /// the read (the flush that covers it starts later, so it covers everything the read saw).
    /// Blocking, like [`Flusher::flush`].
    pub fn cover_read(&self) -> Result<(), String> {
        self.flush()
    }

    /// Installs (or with `None` removes) a hook that runs before every flush; for tests that
    /// hold flushes back or make them fail, to show that nothing is answered before it is
    /// durable.
    pub fn set_hook(&self, hook: Option<FlushHook>) {
        *self.inner.hook.lock().unwrap_or_else(|e| e.into_inner()) = hook;
    }

    /// How many flushes have been asked for so far (each waiter counts once).
    pub fn requests(&self) -> u64 {
        self.inner.lock().requested
    }

    /// Blocks until everything this thread wrote before the call is on disk. For worker
    /// threads only; never call it on the async runtime.
    pub fn flush(&self) -> Result<(), String> {
        let inner = &*self.inner;
        let mut state = inner.lock();
        state.requested += 1;
        let ticket = state.requested;
        loop {
            if state.covered >= ticket {
                return state.outcome(ticket);
            }
            if state.flushing {
                state = inner.done.wait(state).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            // Lead: one flush for every request made so far.
            state.flushing = true;
            let (from, to) = (state.covered + 1, state.requested);
            drop(state);
            let result = inner.flush_store(to - from + 1);
            state = inner.lock();
            state.flushing = false;
            state.covered = to;
            if let Err(e) = result {
                if state.failures.len() == FAILURES_KEPT {
                    state.failures.pop_front();
                }
                state.failures.push_back((from, to, e));
            }
            inner.done.notify_all();
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One flush of the store for `batch` requests, timed.
    fn flush_store(&self, batch: u64) -> Result<(), String> {
        let started = Instant::now();
        let hook = self.hook.lock().unwrap_or_else(|e| e.into_inner()).clone();
        // A panic here must not leave `flushing` set, or every later writer would wait forever.
        let flushed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Some(hook) = hook {
                hook()?;
            }
            self.store.flush().map_err(|e| e.to_string())
        }));
        let result = match flushed {
            Ok(r) => r,
            Err(_) => Err("store flush panicked".to_owned()),
        };
        if let Err(e) = &result {
            error!(error = %e, "store flush failed");
        }
        let took = started.elapsed();
        self.stats.flush_latency.observe(took);
        if took.as_millis() > 100 {
            warn!(ms = took.as_millis() as u64, batch, "slow store flush");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chat_store::{Store, StoreConfig};

    use super::{Flusher, State};
    use crate::BridgeStats;

    #[test]
    fn concurrent_writers_share_flushes_and_every_request_is_covered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), &StoreConfig::default()).unwrap();
        let stats = Arc::new(BridgeStats::new(1));
        let flusher = Flusher::new(store.clone(), stats.clone());
        const THREADS: u64 = 8;
        const EACH: u64 = 50;
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (flusher, store) = (flusher.clone(), store.clone());
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        store.set_last_seen(&format!("u{t}"), i).unwrap();
                        flusher.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let flushes = stats.flush_latency.snapshot().count;
        assert!(
            (1..=THREADS * EACH).contains(&flushes),
            "{flushes} flushes for {} requests",
            THREADS * EACH
        );
        let state = flusher.inner.lock();
        assert_eq!(
            (state.requested, state.covered),
            (THREADS * EACH, THREADS * EACH)
        );
        assert!(!state.flushing && state.failures.is_empty());
    }

    #[test]
    fn a_request_gets_the_outcome_of_the_flush_that_covered_it() {
        let mut state = State::default();
        state.failures.push_back((4, 6, "disk full".to_owned()));
        assert_eq!(state.outcome(3), Ok(()));
        assert_eq!(state.outcome(5), Err("disk full".to_owned()));
        assert_eq!(state.outcome(7), Ok(()));
        // Past the failures remembered, a request older than all of them is not called durable.
        for i in 0..super::FAILURES_KEPT as u64 - 1 {
            state
                .failures
                .push_back((10 + i, 10 + i, "again".to_owned()));
        }
        assert!(state.outcome(3).is_err());
        assert_eq!(state.outcome(9), Ok(()));
    }
}
