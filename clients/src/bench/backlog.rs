//! `--sync-backlog N`: a device catches up with N messages it missed.
//!
//! Two users: `PREFIX0` (the reader) and `PREFIX1` (the writer). The reader is enrolled but not
//! connected while the writer sends it N messages (windowed, as fast as `sent` comes back).
//! Then the reader's device starts: the SDK connects, subscribes and pages through `sync`
//! (`--sync-page` events per page) until it is caught up. Measured from the moment the
//! reader's client starts: until it is subscribed, until the first and the last of the N
//! messages reach the application, and until the SDK reports it is caught up. The SDK hands a
//! sync page's events to the application together, so the arrival of every `page`-th message
//! marks the end of a page; the per-page times assume the reader's inbox holds only this
//! backlog (a fresh `--prefix`, the default).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use chat_proto::{Event, SendRequest, Target};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::fleet::enrol;
use super::report::{round3, Percentiles, Report, Tracker};
use super::workload::{body, parse_body};
use super::Args;
use crate::{Api, Client, ConnState, Options, StateStore};

/// How long the reader may take to receive the whole backlog.
const SYNC_LIMIT: Duration = Duration::from_secs(300);

/// What a sync run measured. Times in ms from the start of the reader's client.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// Messages sent while the reader was offline.
    pub backlog: u64,
    /// Events per page the device asked for (the server gives at most 1000).
    pub page: usize,
    /// Pages the backlog took.
    pub pages: usize,
    /// Seconds the writer took to send the backlog (until the last `sent`).
    pub send_s: f64,
    /// Until the reader was connected and subscribed.
    pub connect_ms: f64,
    /// Until the first backlog message reached the application.
    pub first_ms: f64,
    /// Until the last backlog message reached the application.
    pub sync_ms: f64,
    /// Until the SDK reported the device caught up (`Online`).
    pub online_ms: Option<f64>,
    /// Backlog messages received.
    pub received: u64,
    /// Messages per second from the subscription to the last message.
    pub msgs_per_s: f64,
    /// Per page: from the end of the previous page (the first: from the subscription) to
    /// the end of this one.
    pub page_ms: Percentiles,
}

impl SyncReport {
    /// Summary lines.
    pub(crate) fn summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "  backlog         {} messages sent to the offline reader in {:.2} s",
            self.backlog, self.send_s
        );
        let _ = writeln!(
            s,
            "  sync            {} received: connected {:.1} ms, first {:.1} ms, last {:.1} ms, caught up {} ms ({:.0} msg/s)",
            self.received,
            self.connect_ms,
            self.first_ms,
            self.sync_ms,
            self.online_ms.map_or("?".to_owned(), |v| format!("{v:.1}")),
            self.msgs_per_s
        );
        let _ = writeln!(
            s,
            "  sync pages      {} of {} events: {}",
            self.pages,
            self.page,
            self.page_ms.line()
        );
        s
    }
}

fn ms(d: Duration) -> f64 {
    round3(d.as_secs_f64() * 1000.0)
}

/// The whole sync run; fills `report` (counters, `sync`).
pub(crate) async fn run(args: &Args, prefix: &str, t: &Tracker, report: &mut Report) -> Result<()> {
    let Some(backlog) = args.sync_backlog else {
        bail!("--sync-backlog is not set");
    };
    let names = [format!("{prefix}0"), format!("{prefix}1")];
    report.users = 2;
    report.connections = 2;
    eprintln!("enrolling the reader and the writer...");
    let started = Instant::now();
    let api = Api::new(&args.server, None)?;
    let mut sessions = enrol(args, &api, &names, 1).await?.into_iter();
    let (Some(reader), Some(writer)) = (sessions.next(), sessions.next()) else {
        bail!("enrolment gave too few sessions");
    };
    report.enrol_s = started.elapsed().as_secs_f64();

    let (writer, writer_events) = Client::start(writer, StateStore::Memory, Options::default())?;
    tokio::spawn(async move {
        let mut events = writer_events;
        while events.recv().await.is_some() {}
    });
    writer.wait_online(SYNC_LIMIT).await?;
    eprintln!("sending {backlog} messages to the offline reader...");
    let send_time = send_backlog(args, &writer, &names[0], backlog, t).await;

    eprintln!("connecting the reader...");
    let page = args.sync_page.min(chat_proto::SYNC_MAX_LIMIT);
    let options = Options {
        sync_limit: args.sync_page,
        ..Options::default()
    };
    let start = Instant::now();
    let (reader, mut events) = Client::start(reader, StateStore::Memory, options)?;
    let mut state = reader.state();
    let (mut subscribed, mut online) = (None, None);
    let mut arrivals: Vec<Duration> = Vec::with_capacity(backlog.min(1 << 20) as usize);
    let deadline = start + SYNC_LIMIT;
    while (arrivals.len() as u64) < backlog {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Msg(m)) => {
                    let Some(b) = m.body.as_deref() else { continue };
                    if parse_body(b.as_bytes()).is_some_and(|(run, _, _)| run == t.run()) {
                        arrivals.push(start.elapsed());
                    }
                    t.received(0, b.as_bytes());
                }
                Some(_) => {}
                None => break,
            },
            changed = state.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = start.elapsed();
                match *state.borrow() {
                    ConnState::Syncing => { subscribed.get_or_insert(now); }
                    ConnState::Online => {
                        subscribed.get_or_insert(now);
                        online.get_or_insert(now);
                    }
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
    if online.is_none() && reader.wait_online(Duration::from_secs(10)).await.is_ok() {
        online = Some(start.elapsed());
    }
    let subscribed = subscribed.unwrap_or_default();
    let last = arrivals.last().copied().unwrap_or_default();
    // The last message of each page: every `page`-th, and the very last.
    let mut ends: Vec<usize> = (1..=arrivals.len() / page).map(|k| k * page - 1).collect();
    if arrivals.len() % page != 0 {
        ends.push(arrivals.len() - 1);
    }
    let mut page_us = Vec::with_capacity(ends.len());
    let mut prev = subscribed;
    for at in ends.into_iter().filter_map(|i| arrivals.get(i)) {
        page_us.push(u32::try_from(at.saturating_sub(prev).as_micros()).unwrap_or(u32::MAX));
        prev = *at;
    }
    let syncing = last.saturating_sub(subscribed).as_secs_f64();
    report.sync = Some(SyncReport {
        backlog,
        page,
        pages: page_us.len(),
        send_s: round3(send_time.as_secs_f64()),
        connect_ms: ms(subscribed),
        first_ms: arrivals.first().copied().map(ms).unwrap_or_default(),
        sync_ms: ms(last),
        online_ms: online.map(ms),
        received: arrivals.len() as u64,
        msgs_per_s: if syncing > 0.0 {
            (arrivals.len() as f64 / syncing).round()
        } else {
            0.0
        },
        page_ms: Percentiles::of(page_us),
    });
    report.finish(t, send_time, args.pid);
    // The storm of this run: one device connected, subscribed and caught up.
    report.connect_s = online.unwrap_or(last).as_secs_f64();
    let _ = tokio::join!(reader.close(), writer.close());
    if arrivals.is_empty() {
        return Err(anyhow!(
            "the reader received none of the {backlog} messages"
        ));
    }
    Ok(())
}

/// Sends `count` messages from `writer` to `to`, at most `--window` without `sent`; returns
/// the time until the last `sent`.
async fn send_backlog(args: &Args, writer: &Client, to: &str, count: u64, t: &Tracker) -> Duration {
    let window = Arc::new(Semaphore::new(args.window));
    let start = Instant::now();
    for seq in 1..=count {
        let Ok(permit) = window.clone().acquire_owned().await else {
            break;
        };
        let request = SendRequest {
            id: writer.new_id(),
            target: Target::To(to.to_owned()),
            body: Some(
                String::from_utf8_lossy(&body(t.run(), seq, 1, t.now_us(), args.msg_size))
                    .into_owned(),
            ),
            media: None,
            reply_to: None,
        };
        t.attempted();
        let (writer, t) = (writer.clone(), t.clone());
        tokio::spawn(async move {
            let sent_at = Instant::now();
            match writer.send_request(request).await {
                Ok(_) => t.acked(seq, 1, vec![0], sent_at.elapsed(), None),
                Err(e) => t.failed(e.to_string()),
            }
            drop(permit);
        });
    }
    let all = u32::try_from(args.window).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(SYNC_LIMIT, window.acquire_many(all)).await;
    start.elapsed()
}
