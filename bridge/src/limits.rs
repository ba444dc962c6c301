//! Per-user rate limits: two token buckets per user, one for every request and one for
//! `send`s. A bucket holds up to `burst` tokens and refills at `rate` per second; a request that
//! finds its bucket empty is refused with `rate_limited` and costs the server nothing more.
//! Buckets are per user, so one user flooding never slows another's budget. Full buckets are
//! forgotten when the table grows, so memory stays bounded by the users active recently.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// Above this many tracked users, buckets that have refilled completely are dropped.
const PRUNE_ABOVE: usize = 100_000;

/// One token bucket's settings; `rate == 0` turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rate {
    /// Tokens added per second.
    pub per_sec: f64,
    /// Most tokens held (the largest burst allowed after a quiet period).
    pub burst: f64,
}

impl Rate {
    fn enabled(&self) -> bool {
        self.per_sec > 0.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst,
            at: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_sec).min(rate.burst);
        self.at = now;
    }

    fn take(&mut self, rate: Rate, now: Instant) -> bool {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a refused request ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// The user's budget for all requests.
    Requests,
    /// The user's budget for `send`.
    Sends,
}

/// The per-user buckets.
#[derive(Debug)]
pub struct RateLimiter {
    requests: Rate,
    sends: Rate,
    users: Mutex<HashMap<String, (Bucket, Bucket)>>,
}

impl RateLimiter {
    /// Limits for all requests and for sends.
    pub fn new(requests: Rate, sends: Rate) -> RateLimiter {
        RateLimiter {
            requests,
            sends,
            users: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for a request of `user` (and one send token if `is_send`).
    pub fn check(&self, user: &str, is_send: bool) -> Result<(), Limited> {
        self.check_at(user, is_send, Instant::now())
    }

    fn check_at(&self, user: &str, is_send: bool, now: Instant) -> Result<(), Limited> {
        if !(self.requests.enabled() || is_send && self.sends.enabled()) {
            return Ok(());
        }
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if users.len() >= PRUNE_ABOVE && !users.contains_key(user) {
            let (requests, sends) = (self.requests, self.sends);
            users.retain(|_, (r, s)| {
                r.refill(requests, now);
                s.refill(sends, now);
                r.tokens < requests.burst || s.tokens < sends.burst
            });
        }
        let (req, send) = users.entry(user.to_owned()).or_insert_with(|| {
            (
                Bucket::full(self.requests, now),
                Bucket::full(self.sends, now),
            )
        });
        if self.requests.enabled() && !req.take(self.requests, now) {
            return Err(Limited::Requests);
        }
        if is_send && self.sends.enabled() && !send.take(self.sends, now) {
            return Err(Limited::Sends);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rate(per_sec: f64, burst: f64) -> Rate {
        Rate { per_sec, burst }
    }

    #[test]
    fn burst_then_refill_per_user() {
        let limiter = RateLimiter::new(rate(10.0, 5.0), rate(2.0, 2.0));
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.check_at("amy", false, t0), Ok(()));
        }
        assert_eq!(limiter.check_at("amy", false, t0), Err(Limited::Requests));
        // Another user is not affected.
        assert_eq!(limiter.check_at("bob", false, t0), Ok(()));
        // 100 ms later amy has one token again.
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(limiter.check_at("amy", false, t1), Ok(()));
        assert_eq!(limiter.check_at("amy", false, t1), Err(Limited::Requests));
    }

    #[test]
    fn sends_have_their_own_budget() {
        let limiter = RateLimiter::new(rate(100.0, 100.0), rate(1.0, 2.0));
        let t0 = Instant::now();
        assert_eq!(limiter.check_at("amy", true, t0), Ok(()));
        assert_eq!(limiter.check_at("amy", true, t0), Ok(()));
        assert_eq!(limiter.check_at("amy", true, t0), Err(Limited::Sends));
        // Other requests still pass.
        assert_eq!(limiter.check_at("amy", false, t0), Ok(()));
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(limiter.check_at("amy", true, t1), Ok(()));
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let limiter = RateLimiter::new(rate(0.0, 0.0), rate(0.0, 0.0));
        let t0 = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(limiter.check_at("amy", true, t0), Ok(()));
        }
    }
}
