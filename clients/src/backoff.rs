//! Reconnect delays: exponential backoff with full jitter.

use std::time::Duration;

/// The delay before reconnect attempt `attempt` (1 for the first retry): a random duration
/// between half and all of `min * 2^(attempt-1)`, capped at `max`. The jitter spreads a crowd
/// of clients that lost the same server over the window instead of a stampede.
pub(crate) fn delay(attempt: u32, min: Duration, max: Duration) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let ceiling = min.saturating_mul(1u32 << exp).min(max).max(min);
    let half = ceiling / 2;
    let spread = ceiling.saturating_sub(half).as_micros() as u64;
    half + Duration::from_micros(rand::random::<u64>() % spread.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_caps() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(10));
        for _ in 0..200 {
            let d1 = delay(1, min, max);
            assert!(d1 >= Duration::from_millis(50) && d1 <= min, "{d1:?}");
            let d4 = delay(4, min, max);
            assert!(d4 >= Duration::from_millis(400) && d4 <= Duration::from_millis(800));
            let d30 = delay(30, min, max);
            assert!(d30 >= max / 2 && d30 <= max, "{d30:?}");
        }
    }

    #[test]
    fn jitter_actually_varies() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(10));
        let samples: std::collections::HashSet<Duration> =
            (0..50).map(|_| delay(5, min, max)).collect();
        assert!(samples.len() > 10, "{samples:?}");
    }
}
