//! The sending loop: take due jobs, send them with bounded concurrency, and settle each by its
//! outcome. Retries back off exponentially with jitter (a `Retry-After` from the provider wins);
//! a job that used up `max_attempts`, or failed for good, goes to the dead letters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chat_store::{PushJob, Store};
use rand::Rng;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tracing::{debug, info, warn};

use crate::apns::Apns;
use crate::config::PushConfig;
use crate::fcm::Fcm;
use crate::{now_ms, PushError, PushQueue};

/// A job taken for sending is not taken again for this long (if the node dies mid-send, it is
/// sent again after this).
const LEASE_MS: u64 = 30_000;

/// Longest sleep of an idle sender before it looks at the queue again.
const IDLE_MS: u64 = 1_000;

/// How a send ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    Sent,
    /// Try again later (at `after` if the provider said so).
    Retry {
        after: Option<Duration>,
        reason: String,
    },
    /// The provider says the token is dead: forget it.
    InvalidToken(String),
    /// No sender for the job's platform on this node: drop the job, keep the token.
    Unsupported(String),
    /// Will not work by retrying: dead letter.
    Failed(String),
    /// Not sent: the user had a device online when the job was due. Finished like a sent job
    /// (an update queued meanwhile stays, and is decided again when due).
    Online,
}

impl Outcome {
    pub(crate) fn retry(reason: String) -> Outcome {
        Outcome::Retry {
            after: None,
            reason,
        }
    }
}

/// 429 and 5xx are worth retrying, at the time `Retry-After` (seconds) names if it does.
pub(crate) fn classify_retry(status: StatusCode, headers: &HeaderMap) -> Option<Outcome> {
    if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
        return None;
    }
    let after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    Some(Outcome::Retry {
        after,
        reason: format!("provider answered {status}"),
    })
}

/// Title and body of the notification. Without a preview it says only that something came.
pub(crate) fn notification_text(job: &PushJob) -> (String, String) {
    match &job.preview {
        Some(text) => {
            let more = if job.count > 1 {
                format!(" (+{} more)", job.count - 1)
            } else {
                String::new()
            };
            (job.from.clone(), format!("{text}{more}"))
        }
        None if job.count > 1 => ("New messages".into(), format!("{} new messages", job.count)),
        None => ("New message".into(), "You have a new message".into()),
    }
}

/// Push counters since start.
#[derive(Debug, Default)]
pub struct PushStats {
    /// Notifications the provider accepted.
    pub sent: AtomicU64,
    /// Failed attempts that will be retried.
    pub retried: AtomicU64,
    /// Jobs dropped: invalid token, no provider for the platform, or (counted in
    /// `skipped_online` too) the user had a device online when the job was due.
    pub dropped: AtomicU64,
    /// Jobs not sent because the user had come online by the time they were due (a device
    /// that is connected gets the messages itself).
    pub skipped_online: AtomicU64,
    /// Jobs moved to the dead letters.
    pub dead_lettered: AtomicU64,
}

struct Senders {
    fcm: Option<Fcm>,
    apns: Option<Apns>,
}

/// Says whether a user has a device connected now (the bridge's online table).
pub type OnlineCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// The online check, set once the bridge (which owns the online table) has started.
type OnlineSlot = Arc<OnceLock<OnlineCheck>>;

/// The running sender.
pub struct Pusher {
    stats: Arc<PushStats>,
    online: OnlineSlot,
    queue: Option<PushQueue>,
    task: Option<JoinHandle<()>>,
}

impl Pusher {
    /// Starts sending if a provider is configured. [`Pusher::queue`] is the bridge's handle
    /// (`None` when push is off: nothing is queued then).
    pub fn start(store: Store, config: &PushConfig) -> Result<Pusher, PushError> {
        config.validate().map_err(PushError::Config)?;
        let stats = Arc::new(PushStats::default());
        let online = OnlineSlot::default();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| PushError::Config(format!("HTTP client: {e}")))?;
        let senders = Senders {
            fcm: Fcm::new(&config.fcm, http)?,
            apns: Apns::new(&config.apns)?,
        };
        if senders.fcm.is_none() && senders.apns.is_none() {
            info!("push notifications off (no FCM credentials, no APNs key)");
            return Ok(Pusher {
                stats,
                online,
                queue: None,
                task: None,
            });
        }
        let wake = Arc::new(Notify::new());
        let queue = PushQueue::new(store.clone(), config, wake.clone());
        let task = tokio::spawn(run(
            store,
            config.clone(),
            Arc::new(senders),
            stats.clone(),
            online.clone(),
            wake,
        ));
        Ok(Pusher {
            stats,
            online,
            queue: Some(queue),
            task: Some(task),
        })
    }

    /// The handle for queueing notifications, if push is on.
    pub fn queue(&self) -> Option<PushQueue> {
        self.queue.clone()
    }

    /// Lets the sender ask, when a job is due, whether its user is online now: a job queued
    /// while the user was offline is dropped if a device of theirs connected before it was
    /// due (the device gets the messages, and `sync` catches it up). Until this is called every
    /// due job is sent. Only the first call counts.
    pub fn set_online_check(&self, online: OnlineCheck) {
        let _first = self.online.set(online);
    }

    /// The counters.
    pub fn stats(&self) -> Arc<PushStats> {
        self.stats.clone()
    }

    /// Stops sending (jobs stay queued on disk).
    pub fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl Drop for Pusher {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

async fn run(
    store: Store,
    config: PushConfig,
    senders: Arc<Senders>,
    stats: Arc<PushStats>,
    online: OnlineSlot,
    wake: Arc<Notify>,
) {
    loop {
        let now = now_ms();
        let limit = config.concurrency * 4;
        let s = store.clone();
        let jobs = match blocking(move || s.take_due_push(now, now + LEASE_MS, limit)).await {
            Some(Ok(jobs)) => jobs,
            Some(Err(e)) => {
                warn!(error = %e, "reading the push queue failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            None => return,
        };
        if jobs.is_empty() {
            let s = store.clone();
            // Woken by new jobs; the idle wait is short so that jobs an operator put back
            // (dead letters retried through the store) go out soon too.
            let next = blocking(move || s.next_push_due()).await;
            let wait = match next {
                Some(Ok(Some(at))) => {
                    Duration::from_millis(at.saturating_sub(now_ms()).min(IDLE_MS))
                }
                _ => Duration::from_millis(IDLE_MS),
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        let mut running = JoinSet::new();
        for job in jobs {
            // Decided again now: the user may have come online since the job was queued.
            if online.get().is_some_and(|is_online| is_online(&job.user)) {
                debug!(job = job.id(), "push skipped: the user is online");
                settle(store.clone(), &config, stats.clone(), job, Outcome::Online).await;
                continue;
            }
            while running.len() >= config.concurrency {
                running.join_next().await;
            }
            let (store, senders, stats, config) = (
                store.clone(),
                senders.clone(),
                stats.clone(),
                config.clone(),
            );
            running.spawn(async move {
                let outcome = match job.platform.as_str() {
                    "fcm" => match &senders.fcm {
                        Some(fcm) => fcm.send(&job).await,
                        None => Outcome::Unsupported("FCM is not configured".into()),
                    },
                    "apns" => match &senders.apns {
                        Some(apns) => apns.send(&job).await,
                        None => Outcome::Unsupported("APNs is not configured".into()),
                    },
                    other => Outcome::Unsupported(format!("unknown platform {other:?}")),
                };
                settle(store, &config, stats, job, outcome).await;
            });
        }
        while running.join_next().await.is_some() {}
    }
}

/// Records the outcome of one send in the queue and the counters.
async fn settle(
    store: Store,
    config: &PushConfig,
    stats: Arc<PushStats>,
    job: PushJob,
    outcome: Outcome,
) {
    let now = now_ms();
    let id = job.id();
    let last_attempt = job.attempts + 1 >= config.max_attempts;
    let exp = config
        .backoff_initial_ms
        .saturating_mul(1u64 << job.attempts.min(30))
        .min(config.backoff_max_ms);
    // Jitter in the upper half: spreads retries of many jobs without undercutting the backoff.
    let backoff = rand::thread_rng().gen_range(exp / 2..=exp);
    let max_wait = config.backoff_max_ms;
    let result = blocking(move || match outcome {
        Outcome::Sent => {
            stats_add(&stats.sent);
            store.push_sent(&job, now)
        }
        Outcome::Online => {
            stats_add(&stats.dropped);
            stats_add(&stats.skipped_online);
            store.push_sent(&job, now)
        }
        Outcome::Retry { reason, .. } if last_attempt => {
            warn!(
                job = id,
                reason, "push dead-lettered after its last attempt"
            );
            stats_add(&stats.dead_lettered);
            store.push_dead_letter(&job, &reason)
        }
        Outcome::Retry { after, reason } => {
            let wait = after.map_or(backoff, |d| (d.as_millis() as u64).min(max_wait));
            debug!(job = id, reason, wait_ms = wait, "push will be retried");
            stats_add(&stats.retried);
            store.push_retry(&job, now + wait, &reason)
        }
        Outcome::InvalidToken(reason) => {
            info!(job = id, reason, "push token removed");
            stats_add(&stats.dropped);
            store.push_drop(&job)?;
            store.remove_push_token(&job.user, &job.device).map(drop)
        }
        Outcome::Unsupported(reason) => {
            debug!(job = id, reason, "push dropped");
            stats_add(&stats.dropped);
            store.push_drop(&job)
        }
        Outcome::Failed(reason) => {
            warn!(job = id, reason, "push failed for good; dead-lettered");
            stats_add(&stats.dead_lettered);
            store.push_dead_letter(&job, &reason)
        }
    })
    .await;
    if let Some(Err(e)) = result {
        warn!(error = %e, "recording a push outcome failed");
    }
}

fn stats_add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
