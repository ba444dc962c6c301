//! The send loop and the message bodies.
//!
//! A body is `cb{run}.{seq}.{sender}.{micros}.` padded with `x` to the message size: the
//! recipient matches it to its send (duplicates, losses) and computes the delivery latency from
//! it. `run` is random per run, so messages of an earlier run against the same accounts (which
//! `sync` brings back) are not counted.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::fleet::{Dest, Fleet};
use super::report::Tracker;
use super::Args;

/// The smallest body: room for the header.
pub(crate) const MIN_BODY: usize = 40;

/// A body of `size` bytes for message `seq` of run `run` from user `sender`, sent at `sent_us`.
pub(crate) fn body(run: u32, seq: u64, sender: u32, sent_us: u64, size: usize) -> Vec<u8> {
    let mut b = format!("cb{run}.{seq}.{sender}.{sent_us}.").into_bytes();
    b.resize(size.max(b.len()), b'x');
    b
}

/// `(run, seq, sent_us)` of a body made by [`body`].
pub(crate) fn parse_body(b: &[u8]) -> Option<(u32, u64, u64)> {
    let text = std::str::from_utf8(b.get(..b.len().min(80))?).ok()?;
    let mut parts = text.strip_prefix("cb")?.split('.');
    let run = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let _sender: u32 = parts.next()?.parse().ok()?;
    let sent_us = parts.next()?.parse().ok()?;
    Some((run, seq, sent_us))
}

/// Resolves once `path` exists (never without a path).
async fn stop_requested(path: Option<&Path>) {
    let Some(path) = path else {
        return std::future::pending().await;
    };
    while !path.exists() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends until the duration or count is reached (or the stop file appears), keeping at most `--window` sends without
/// acknowledgement, paced at `--rate` if given; then waits (up to the drain time) for the
/// outstanding acknowledgements. Returns the workload's length: until the last
/// acknowledgement.
pub(crate) async fn drive(
    args: &Args,
    fleet: &Fleet,
    groups: &[Vec<u32>],
    t: &Tracker,
) -> Duration {
    let users = args.users as u32;
    let window = Arc::new(Semaphore::new(args.window));
    let start = Instant::now();
    let deadline = args.run_for().map(|d| start + d);
    let count = args.count.unwrap_or(u64::MAX);
    let mut pace = args.rate.map(|r| {
        let mut i = tokio::time::interval(Duration::from_secs_f64(1.0 / r));
        i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        i
    });
    let mut rng = StdRng::from_entropy();
    let last_ack = Arc::new(AtomicU64::new(0));
    let stop_file = args.stop_file.as_deref();
    let until_deadline = || async move {
        let at_deadline = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = at_deadline => {}
            _ = stop_requested(stop_file) => {}
        }
    };
    let mut seq = 0u64;
    while seq < count {
        if let Some(pace) = &mut pace {
            tokio::select! {
                _ = pace.tick() => {}
                _ = until_deadline() => break,
            }
        }
        let permit = tokio::select! {
            p = window.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = until_deadline() => break,
        };
        if deadline.is_some_and(|at| Instant::now() >= at)
            || stop_file.is_some_and(|path| path.exists())
        {
            break;
        }
        seq += 1;
        let to_group = !groups.is_empty() && rng.gen_bool(args.group_share);
        let (from, dest, recipients) = if !to_group {
            let from = rng.gen_range(0..users);
            let mut to = rng.gen_range(0..users - 1);
            if to >= from {
                to += 1;
            }
            (from, Dest::User(to), vec![to])
        } else {
            let g = rng.gen_range(0..groups.len());
            let members = &groups[g];
            let from = members[rng.gen_range(0..members.len())];
            let others: Vec<u32> = members.iter().copied().filter(|m| *m != from).collect();
            (from, Dest::Group(g), others)
        };
        let payload = body(t.run(), seq, from, t.now_us(), args.msg_size);
        t.attempted();
        let (fleet, t, last_ack) = (fleet.clone(), t.clone(), last_ack.clone());
        tokio::spawn(async move {
            let sent_at = Instant::now();
            match fleet.send(from, dest, payload).await {
                Ok(sent) => {
                    t.acked(seq, from, recipients, sent_at.elapsed(), sent.as_ref());
                    last_ack.fetch_max(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                }
                Err(e) => t.failed(e),
            }
            drop(permit);
        });
    }
    // Wait for the outstanding acknowledgements.
    let all = u32::try_from(args.window).unwrap_or(u32::MAX);
    let drain = Duration::from_secs_f64(args.drain);
    let _ = tokio::time::timeout(drain, window.acquire_many(all)).await;
    // Throughput counts until the last acknowledgement (or the end, if nothing was).
    let last = Duration::from_micros(last_ack.load(Ordering::Relaxed));
    if last.is_zero() {
        start.elapsed()
    } else {
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_round_trip_and_have_the_asked_size() {
        let b = body(u32::MAX, 12345, 17, 987_654_321, 100);
        assert_eq!(b.len(), 100);
        assert_eq!(parse_body(&b), Some((u32::MAX, 12345, 987_654_321)));
        let small = body(9, 1, 2, 3, 0);
        assert_eq!(parse_body(&small), Some((9, 1, 3)));
        for bad in [
            &b"hello"[..],
            b"cb",
            b"cb1.1.x.3.",
            b"cb1.x.1.2.",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_body(bad), None);
        }
    }
}
