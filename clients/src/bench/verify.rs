//! `--verify`: after the drain, an audit of what the node stored against what its `sent`
//! events promised. For every conversation used, its whole history (paged over MQTT, newest
//! first): seqs gapless from 1 and in order, every acknowledged message exactly once at the
//! `seq` its `sent` named. For every user, the whole inbox (`sync` from `n` 0): `n` gapless
//! from 1, each conversation's entries in `seq` order, every acknowledged message exactly once
//! (a `sent` for its sender, a `msg` for each recipient).
//!
//! Messages of this run are recognised by their body (see `workload.rs`); those of earlier
//! runs against the same accounts count for the seq and `n` checks only.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use chat_proto::{Conv, Event, HistoryEntry};
use serde::Serialize;
use tokio::task::JoinSet;

use super::fleet::Fleet;
use super::report::{Acked, Tracker};
use super::workload::parse_body;
use crate::Client;

/// How long every client may take to be online again before the audit starts.
const ONLINE_WAIT: Duration = Duration::from_secs(120);
/// History and sync page sizes (the node's maximums).
const HISTORY_PAGE: usize = 200;
const SYNC_PAGE: usize = 1000;
/// Conversations or inboxes read at once.
const PARALLEL: usize = 16;

/// What the audit found. `lost`, `duplicated`, `out_of_order` and `gaps` must all be 0.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Verification {
    /// Acknowledged sends checked.
    pub acknowledged: u64,
    /// Acknowledged messages missing from their history, plus inbox entries owed for
    /// acknowledged messages that are missing.
    pub lost: u64,
    /// Extra copies: a message stored twice in a history, an inbox entry for one message
    /// twice.
    pub duplicated: u64,
    /// A message at another `seq` (or with another `msg_id`) than its `sent` said, history
    /// entries out of `seq` order, inbox entries of one conversation out of `seq` order,
    /// inbox `n` going backwards.
    pub out_of_order: u64,
    /// Missing numbers: seqs of a conversation, `n`s of an inbox.
    pub gaps: u64,
    /// The conversations' side.
    pub history: HistoryAudit,
    /// The inboxes' side.
    pub inbox: InboxAudit,
    /// The first problem, in words.
    pub first_problem: Option<String>,
}

/// The histories' part of a [`Verification`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct HistoryAudit {
    /// Conversations read.
    pub conversations: u64,
    /// Entries read (messages of every run, group changes).
    pub entries: u64,
    /// Acknowledged messages not found.
    pub lost: u64,
    /// Extra copies of this run's messages (same body or same `msg_id`).
    pub duplicated: u64,
    /// Acknowledged messages at another seq or with another `msg_id` than `sent` said.
    pub misplaced: u64,
    /// Entries not newest-first by seq, or a seq twice.
    pub out_of_order: u64,
    /// Seqs missing between 1 and the newest.
    pub seq_gaps: u64,
    /// This run's messages stored without an acknowledgement reaching the bench (sends still
    /// unanswered at the end, or refused ones): allowed, reported for information.
    pub unacked_stored: u64,
}

/// The inboxes' part of a [`Verification`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct InboxAudit {
    /// Inboxes read (one device per user).
    pub users: u64,
    /// Events read.
    pub events: u64,
    /// Owed entries (`sent` to the sender, `msg` to each recipient) not found.
    pub lost: u64,
    /// Entries for one message beyond the first.
    pub duplicated: u64,
    /// `n` going backwards or repeating, or a conversation's `msg` and `group` entries out of
    /// seq order.
    pub out_of_order: u64,
    /// `n`s missing between 1 and the last.
    pub n_gaps: u64,
}

impl Verification {
    /// Why the run fails, if it does.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (count, what) in [
            (self.lost, "lost"),
            (self.duplicated, "duplicated"),
            (self.out_of_order, "out of order"),
            (self.gaps, "gaps"),
        ] {
            if count > 0 {
                p.push(format!("{count} {what}"));
            }
        }
        if let (false, Some(first)) = (p.is_empty(), &self.first_problem) {
            p.push(format!("first: {first}"));
        }
        p
    }

    /// The summary's lines.
    pub(crate) fn summary(&self) -> String {
        let (h, i) = (&self.history, &self.inbox);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "  verified        {} acknowledged: {} lost, {} duplicated, {} out of order, {} gaps",
            self.acknowledged, self.lost, self.duplicated, self.out_of_order, self.gaps
        );
        let _ = writeln!(
            s,
            "    histories     {} conversations, {} entries: {} lost, {} duplicated, {} misplaced, {} out of order, {} seq gaps; {} stored unacknowledged",
            h.conversations, h.entries, h.lost, h.duplicated, h.misplaced, h.out_of_order, h.seq_gaps, h.unacked_stored
        );
        let _ = writeln!(
            s,
            "    inboxes       {} users, {} events: {} lost, {} duplicated, {} out of order, {} n gaps",
            i.users, i.events, i.lost, i.duplicated, i.out_of_order, i.n_gaps
        );
        if let Some(first) = &self.first_problem {
            let _ = writeln!(s, "    first problem {first}");
        }
        s
    }

    /// The totals from the two sides.
    fn add_up(&mut self) {
        let (h, i) = (&self.history, &self.inbox);
        self.lost = h.lost + i.lost;
        self.duplicated = h.duplicated + i.duplicated;
        self.out_of_order = h.misplaced + h.out_of_order + i.out_of_order;
        self.gaps = h.seq_gaps + i.n_gaps;
    }

    fn problem(&mut self, what: impl FnOnce() -> String) {
        if self.first_problem.is_none() {
            self.first_problem = Some(what());
        }
    }
}

/// Audits the node after a chat-mode run; `members` are the groups' members by index (the
/// first one created the group).
pub(crate) async fn run(fleet: &Fleet, members: &[Vec<u32>], t: &Tracker) -> Result<Verification> {
    let (clients, names, groups) = fleet
        .chat_parts()
        .ok_or_else(|| anyhow!("--verify is for chat mode only"))?;
    let mut waits = JoinSet::new();
    for c in clients {
        let c = c.clone();
        waits.spawn(async move { c.wait_online(ONLINE_WAIT).await });
    }
    while let Some(joined) = waits.join_next().await {
        joined
            .map_err(|e| anyhow!("online task: {e}"))?
            .context("a client was not online again for the audit")?;
    }

    let acks = t.acks();
    let mut v = Verification {
        acknowledged: acks.len() as u64,
        ..Verification::default()
    };
    // Every conversation used, read by one of its members.
    let mut convs: BTreeMap<String, (Conv, u32)> = BTreeMap::new();
    for a in &acks {
        convs
            .entry(a.conv.to_string())
            .or_insert_with(|| (a.conv.clone(), a.from));
    }
    for (g, id) in groups.iter().enumerate() {
        let conv: Conv = format!("g.{id}")
            .parse()
            .map_err(|e| anyhow!("group {id}: {e}"))?;
        let creator = members.get(g).and_then(|m| m.first()).copied().unwrap_or(0);
        convs.entry(conv.to_string()).or_insert((conv, creator));
    }
    let histories = read_all(
        convs.into_values().map(|(conv, reader)| {
            let client = clients[reader as usize].clone();
            async move {
                let entries = read_history(&client, &conv).await;
                (conv, entries)
            }
        }),
        "history",
    )
    .await?;
    check_histories(&mut v, t.run(), &acks, &histories);

    let inboxes = read_all(
        clients.iter().enumerate().map(|(i, client)| {
            let client = client.clone();
            async move { (i, read_inbox(&client).await) }
        }),
        "inbox",
    )
    .await?;
    check_inboxes(&mut v, names, &acks, inboxes);

    v.add_up();
    Ok(v)
}

/// Runs the reads, [`PARALLEL`] at a time; fails on the first read that failed.
async fn read_all<F, K, T>(reads: impl Iterator<Item = F>, what: &str) -> Result<Vec<(K, T)>>
where
    F: std::future::Future<Output = (K, Result<T>)> + Send + 'static,
    K: Send + 'static,
    T: Send + 'static,
{
    let mut running: JoinSet<(K, Result<T>)> = JoinSet::new();
    let mut out = Vec::new();
    for read in reads {
        if running.len() >= PARALLEL {
            if let Some(joined) = running.join_next().await {
                let (key, result) = joined.map_err(|e| anyhow!("{what} task: {e}"))?;
                out.push((key, result.with_context(|| format!("reading a {what}"))?));
            }
        }
        running.spawn(read);
    }
    while let Some(joined) = running.join_next().await {
        let (key, result) = joined.map_err(|e| anyhow!("{what} task: {e}"))?;
        out.push((key, result.with_context(|| format!("reading a {what}"))?));
    }
    Ok(out)
}

/// A conversation's whole history, as the node pages it: newest first.
async fn read_history(client: &Client, conv: &Conv) -> Result<Vec<HistoryEntry>> {
    let mut entries: Vec<HistoryEntry> = Vec::new();
    let mut before = None;
    loop {
        let page = client
            .history(conv.clone(), before, Some(HISTORY_PAGE))
            .await
            .with_context(|| format!("history of {conv} before {before:?}"))?;
        let oldest = page.messages.iter().map(HistoryEntry::seq).min();
        entries.extend(page.messages);
        match oldest {
            Some(seq) if page.more && seq > 1 => before = Some(seq),
            _ => return Ok(entries),
        }
    }
}

/// A user's whole inbox from `n` 0, oldest first.
async fn read_inbox(client: &Client) -> Result<Vec<Event>> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = client
            .sync(after, SYNC_PAGE)
            .await
            .with_context(|| format!("{}'s inbox after {after}", client.user()))?;
        for raw in &page.events {
            events.push(
                raw.parse()
                    .with_context(|| format!("an inbox entry of {}", client.user()))?,
            );
        }
        if !page.more || page.last <= after {
            return Ok(events);
        }
        after = page.last;
    }
}

fn check_histories(
    v: &mut Verification,
    run: u32,
    acks: &[Acked],
    histories: &[(Conv, Vec<HistoryEntry>)],
) {
    let by_bench_seq: HashMap<u64, &Acked> = acks.iter().map(|a| (a.bench_seq, a)).collect();
    // This run's messages as stored: bench seq -> [(conv, seq, msg_id)].
    let mut stored: HashMap<u64, Vec<(String, u64, u64)>> = HashMap::new();
    for (conv, entries) in histories {
        let h = &mut v.history;
        h.conversations += 1;
        h.entries += entries.len() as u64;
        // Newest first, each seq once.
        let mut order_faults = 0;
        for pair in entries.windows(2) {
            if pair[1].seq() >= pair[0].seq() {
                order_faults += 1;
            }
        }
        let seqs: HashSet<u64> = entries.iter().map(HistoryEntry::seq).collect();
        let newest = seqs.iter().copied().max().unwrap_or(0);
        let gaps = (1..=newest).filter(|s| !seqs.contains(s)).count() as u64;
        h.out_of_order += order_faults;
        h.seq_gaps += gaps;
        if order_faults > 0 {
            v.problem(|| format!("{conv}: history entries out of seq order"));
        }
        if gaps > 0 {
            v.problem(|| format!("{conv}: {gaps} seqs missing in 1..={newest}"));
        }
        let mut ids = HashSet::new();
        for entry in entries {
            let HistoryEntry::Msg(m) = entry else {
                continue;
            };
            let Some((r, bench_seq, _)) = m.body.as_deref().and_then(|b| parse_body(b.as_bytes()))
            else {
                continue;
            };
            if r != run {
                continue;
            }
            if !ids.insert(m.msg_id) {
                v.history.duplicated += 1;
                v.problem(|| format!("{conv}: msg_id {} listed twice", m.msg_id));
            }
            stored
                .entry(bench_seq)
                .or_default()
                .push((conv.to_string(), m.seq, m.msg_id));
        }
    }
    for a in acks {
        let copies = stored
            .get(&a.bench_seq)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let h = &mut v.history;
        match copies {
            [] => {
                h.lost += 1;
                v.problem(|| {
                    format!(
                        "{}: message {} acknowledged at seq {} is not in the history",
                        a.conv, a.msg_id, a.seq
                    )
                });
            }
            [(conv, seq, msg_id), rest @ ..] => {
                if !rest.is_empty() {
                    h.duplicated += rest.len() as u64;
                    v.problem(|| {
                        format!(
                            "{}: message {} stored {} times",
                            a.conv,
                            a.msg_id,
                            copies.len()
                        )
                    });
                }
                let here = |(c, s, m): &(String, u64, u64)| {
                    *c == a.conv.to_string() && *s == a.seq && *m == a.msg_id
                };
                if !copies.iter().any(here) {
                    v.history.misplaced += 1;
                    v.problem(|| {
                        format!(
                            "{}: message {} acknowledged at seq {} is stored as {conv} seq {seq} msg_id {msg_id}",
                            a.conv, a.msg_id, a.seq
                        )
                    });
                }
            }
        }
    }
    v.history.unacked_stored = stored
        .keys()
        .filter(|s| !by_bench_seq.contains_key(s))
        .count() as u64;
}

fn check_inboxes(
    v: &mut Verification,
    names: &[String],
    acks: &[Acked],
    inboxes: Vec<(usize, Vec<Event>)>,
) {
    // Per user: how often each msg_id came as `sent` and as `msg`.
    let mut sent: Vec<HashMap<u64, u32>> = vec![HashMap::new(); names.len()];
    let mut msgs: Vec<HashMap<u64, u32>> = vec![HashMap::new(); names.len()];
    for (user, events) in inboxes {
        let name = &names[user];
        v.inbox.users += 1;
        v.inbox.events += events.len() as u64;
        let mut expected = 1u64;
        let mut last_seq: HashMap<String, u64> = HashMap::new();
        for event in &events {
            let (n, conv, seq) = match event {
                Event::Sent(e) => (Some(e.n), e.conv.to_string(), Some(e.seq)),
                Event::Msg(e) => (e.n, e.conv.to_string(), Some(e.seq)),
                Event::Group(e) => (e.n, format!("g.{}", e.group), Some(e.seq)),
                Event::Receipt(e) => (Some(e.n), e.conv.to_string(), None),
                _ => continue,
            };
            let n = n.unwrap_or(0);
            if n == expected {
                expected += 1;
            } else if n < expected {
                v.inbox.out_of_order += 1;
                v.problem(|| format!("{name}'s inbox: n {n} after n {}", expected - 1));
            } else {
                v.inbox.n_gaps += n - expected;
                v.problem(|| format!("{name}'s inbox: n {expected}..{} missing", n - 1));
                expected = n + 1;
            }
            // A conversation's messages reach an inbox in seq order. (Not so with the
            // user's own `sent` entries: a group message's copies to the members follow
            // the sender's `sent` in batches, so a member's `sent` for a later message may
            // come first.)
            if let (Some(seq), false) = (seq, matches!(event, Event::Sent(_))) {
                let previous = last_seq.insert(conv.clone(), seq);
                if previous.is_some_and(|p| p >= seq) {
                    v.inbox.out_of_order += 1;
                    v.problem(|| {
                        format!("{name}'s inbox: {conv} seq {seq} after seq {previous:?}")
                    });
                }
            }
            match event {
                Event::Sent(e) => *sent[user].entry(e.msg_id).or_default() += 1,
                Event::Msg(e) => *msgs[user].entry(e.msg_id).or_default() += 1,
                _ => {}
            }
        }
    }
    for counts in sent.iter().chain(msgs.iter()) {
        for (msg_id, c) in counts {
            if *c > 1 {
                v.inbox.duplicated += u64::from(c - 1);
                v.problem(|| format!("message {msg_id} is {c} times in one inbox"));
            }
        }
    }
    for a in acks {
        let owed = std::iter::once((a.from, &sent))
            .chain(a.recipients.iter().map(|r| (*r, &msgs)))
            .filter(|(user, map)| !map[*user as usize].contains_key(&a.msg_id));
        for (user, _) in owed {
            v.inbox.lost += 1;
            v.problem(|| {
                format!(
                    "{}'s inbox lacks message {} ({} seq {})",
                    names[user as usize], a.msg_id, a.conv, a.seq
                )
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::bench::workload::body;

    const RUN: u32 = 7;
    const CONV: &str = "d.u0.u1";

    fn text(bench_seq: u64) -> String {
        String::from_utf8(body(RUN, bench_seq, 0, 0, 40)).unwrap()
    }

    fn acked(bench_seq: u64, seq: u64, msg_id: u64) -> Acked {
        Acked {
            bench_seq,
            from: 0,
            recipients: vec![1],
            conv: CONV.parse().unwrap(),
            seq,
            msg_id,
        }
    }

    /// A history entry for message `bench_seq` stored at `seq` as `msg_id`.
    fn entry(bench_seq: u64, seq: u64, msg_id: u64) -> HistoryEntry {
        let json = serde_json::json!({"type": "msg", "msg_id": msg_id.to_string(), "conv": CONV,
            "seq": seq, "from": "u0", "to": "u1", "body": text(bench_seq), "ts": 1});
        serde_json::from_value(json).unwrap()
    }

    /// An inbox event: `sent` (for u0) or `msg` (for u1).
    fn event(kind: &str, n: u64, bench_seq: u64, seq: u64, msg_id: u64) -> Event {
        let json = serde_json::json!({"type": kind, "id": "c1", "msg_id": msg_id.to_string(),
            "conv": CONV, "seq": seq, "from": "u0", "to": "u1", "body": text(bench_seq),
            "ts": 1, "n": n});
        Event::from_json(json.to_string().as_bytes()).unwrap()
    }

    fn audit(history: Vec<HistoryEntry>, u0: Vec<Event>, u1: Vec<Event>) -> Verification {
        let acks = [acked(1, 1, 11), acked(2, 2, 12)];
        let names = ["u0".to_owned(), "u1".to_owned()];
        let mut v = Verification::default();
        check_histories(&mut v, RUN, &acks, &[(CONV.parse().unwrap(), history)]);
        check_inboxes(&mut v, &names, &acks, vec![(0, u0), (1, u1)]);
        v.add_up();
        v
    }

    #[test]
    fn a_faithful_node_passes() {
        let v = audit(
            vec![entry(2, 2, 12), entry(1, 1, 11)],
            vec![event("sent", 1, 1, 1, 11), event("sent", 2, 2, 2, 12)],
            vec![event("msg", 1, 1, 1, 11), event("msg", 2, 2, 2, 12)],
        );
        let (h, i) = (&v.history, &v.inbox);
        assert_eq!(
            (h.conversations, h.entries, i.users, i.events),
            (1, 2, 2, 4)
        );
        assert_eq!(
            (
                h.lost,
                h.duplicated,
                h.misplaced,
                h.out_of_order,
                h.seq_gaps
            ),
            (0, 0, 0, 0, 0)
        );
        assert_eq!(
            (i.lost, i.duplicated, i.out_of_order, i.n_gaps),
            (0, 0, 0, 0)
        );
        assert!(
            v.first_problem.is_none() && v.problems().is_empty(),
            "{v:?}"
        );
    }

    #[test]
    fn losses_duplicates_gaps_and_misplaced_messages_are_counted() {
        // History: message 1 is gone (seq 1 missing), message 2 is stored twice (seq 2 and,
        // again, seq 3) and an unacknowledged message 3 sits at seq 4.
        let v = audit(
            vec![entry(3, 4, 14), entry(2, 3, 13), entry(2, 2, 12)],
            vec![event("sent", 1, 1, 1, 11), event("sent", 2, 2, 2, 12)],
            // u1: n 2 missing, message 12 twice, and the second copy goes back in seq.
            vec![
                event("msg", 1, 2, 2, 12),
                event("msg", 3, 2, 2, 12),
                event("msg", 4, 1, 1, 11),
            ],
        );
        let (h, i) = (&v.history, &v.inbox);
        assert_eq!(
            (h.lost, h.duplicated, h.seq_gaps, h.unacked_stored),
            (1, 1, 1, 1)
        );
        assert_eq!((h.misplaced, h.out_of_order), (0, 0));
        assert_eq!((i.lost, i.duplicated, i.n_gaps), (0, 1, 1));
        assert_eq!(i.out_of_order, 2, "seq 2 after 2, seq 1 after 2");
        assert_eq!((v.lost, v.duplicated, v.gaps, v.out_of_order), (1, 2, 2, 2));
        let problems = v.problems().join(", ");
        assert!(
            problems.starts_with("1 lost, 2 duplicated, 2 out of order, 2 gaps, first: ")
                && problems.contains("seqs missing"),
            "{problems}"
        );

        // Message 2 at another seq than its `sent` said; u1 lacks message 11 entirely.
        let v = audit(
            vec![entry(2, 2, 99), entry(1, 1, 11)],
            vec![event("sent", 1, 1, 1, 11), event("sent", 2, 2, 2, 12)],
            vec![event("msg", 1, 2, 2, 12)],
        );
        assert_eq!((v.history.misplaced, v.history.lost), (1, 0));
        assert_eq!(v.inbox.lost, 1);
        assert_eq!((v.lost, v.out_of_order), (1, 1));
    }
}
