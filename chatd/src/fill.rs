//! `chatd fill`: writes N 1:1 messages into a node's data directory through the store, exactly
//! as the node stores them, as fast as the store allows. For measuring what a node with many
//! stored messages costs: bytes on disk per message, and the time a restart takes.
//!
//! Why a `chatd` subcommand and not a store example: the tool must lay the data out the way
//! this node's configuration says (the data directory's `db/`, the shard count, the password
//! hashing parameters, the node id in every `msg_id`) and store what the bridge stores (the
//! `{"to","body"}` content, Snowflake ids), so it reads the same [`Config`](crate::Config) as
//! `chatd serve` and uses the bridge's id generator.
//!
//! What it writes, per message, is what the bridge writes for a 1:1 `send`
//! (`bridge/src/worker.rs`): through the conversation shard's [`ConvWriter`] the message, its
//! idempotency key and a fan-out marker; then the sender's `sent` and the recipient's `msg`
//! inbox entries (with the fan-out watermark and the sent index); then the marker is cleared.
//! Batches are larger than a busy node's (a chunk of messages per shard at once, one flush per
//! chunk) and no receipts are written; the keys and values are the node's.
//!
//! Users are `PREFIX0` .. `PREFIX{U-1}` with one password; existing users are reused, so fill
//! can be run again to add more messages (client ids are random per run, so they never clash). Conversations are `C` fixed pairs of users; each
//! message goes to a random conversation (seeded, so runs are reproducible) from a random one
//! of its two members, with a body of `body_size` bytes of lowercase words. Not crash-safe: a
//! fill that is interrupted leaves a data directory to throw away.

use std::time::Instant;

use chat_bridge::ids::{now_ms, Snowflake};
use chat_proto::Conv;
use chat_store::{Appending, ConvWriter, InboxItem, NewMessage, Store, StoreError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Messages written between two flushes.
const CHUNK: u64 = 20_000;

/// What to fill.
#[derive(Debug, Clone)]
pub struct FillOptions {
    /// Messages to add.
    pub messages: u64,
    /// Users (`prefix0` ..).
    pub users: u32,
    /// 1:1 conversations (fixed pairs of users); at least 1.
    pub convs: u32,
    /// Body size in bytes.
    pub body_size: usize,
    /// User id prefix.
    pub prefix: String,
    /// Password of every user (8..=256 bytes).
    pub password: String,
    /// Seed of the random choices.
    pub seed: u64,
    /// The node id in the messages' Snowflake ids.
    pub node_id: u16,
}

/// What a fill did.
#[derive(Debug, Clone, Serialize)]
pub struct FillReport {
    /// Messages written.
    pub messages: u64,
    /// Users.
    pub users: u32,
    /// Users created by this run (the others existed).
    pub users_created: u32,
    /// Conversations.
    pub convs: u32,
    /// Body size in bytes.
    pub body_size: usize,
    /// Seconds spent creating users.
    pub users_s: f64,
    /// Seconds spent writing messages (with the final flush).
    pub fill_s: f64,
    /// Messages per second of `fill_s`.
    pub msgs_per_s: f64,
    /// The database's size on disk afterwards, as sled counts it (bytes).
    pub db_bytes: u64,
}

/// Why a fill failed.
#[derive(Debug, thiserror::Error)]
pub enum FillError {
    /// The options make no sense.
    #[error("{0}")]
    Invalid(String),
    /// The store refused or failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// The `c`-th conversation's two members (indices), distinct: user `c mod U` and a partner
/// a stride away that changes with each round over the users.
fn members(c: u32, users: u32) -> (u32, u32) {
    let a = c % users;
    let round = c / users;
    // Strides 1, 2, 3 ... for successive rounds, kept below `users`.
    let stride = 1 + round % (users - 1);
    (a, (a + stride) % users)
}

/// A body of `size` bytes: lowercase words and spaces.
fn body(rng: &mut StdRng, size: usize) -> String {
    const WORDS: [&str; 16] = [
        "see", "you", "at", "the", "station", "tomorrow", "ok", "sounds", "good", "running",
        "late", "coffee", "later", "thanks", "where", "are",
    ];
    let mut s = String::with_capacity(size + 10);
    while s.len() < size {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(WORDS[rng.gen_range(0..WORDS.len())]);
    }
    s.truncate(size);
    s
}

impl FillOptions {
    fn validate(&self) -> Result<(), FillError> {
        let bad = |m: &str| Err(FillError::Invalid(m.to_owned()));
        if self.users < 2 {
            return bad("--users must be at least 2");
        }
        if self.convs == 0 {
            return bad("--convs must be at least 1");
        }
        if self.body_size == 0 || self.body_size > chat_proto::MAX_BODY_LEN {
            return bad("--body-size must be between 1 and the protocol's largest body");
        }
        if !chat_store::valid_id(&format!("{}{}", self.prefix, self.users)) {
            return bad("--prefix: user ids must be 1-32 characters of a-z and 0-9");
        }
        Ok(())
    }
}

/// Creates the users (reusing existing ones) and writes the messages. Blocking.
pub fn fill(store: &Store, opts: &FillOptions) -> Result<FillReport, FillError> {
    opts.validate()?;
    let names: Vec<String> = (0..opts.users)
        .map(|i| format!("{}{i}", opts.prefix))
        .collect();
    let started = Instant::now();
    let mut created = 0;
    for name in &names {
        match store.create_user(name, &opts.password) {
            Ok(()) => created += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let users_s = started.elapsed().as_secs_f64();

    let convs: Vec<(String, u32, u32)> = (0..opts.convs)
        .map(|c| {
            let (a, b) = members(c, opts.users);
            let conv = Conv::direct(&names[a as usize], &names[b as usize])
                .map_err(|e| FillError::Invalid(format!("conversation {c}: {e}")))?;
            Ok((conv.to_string(), a, b))
        })
        .collect::<Result<_, FillError>>()?;
    let mut writers: Vec<ConvWriter> = (0..store.config().shards)
        .map(|s| store.conv_writer(s))
        .collect::<Result<_, _>>()?;
    let ids = Snowflake::open(opts.node_id, store)?;
    let mut rng = StdRng::seed_from_u64(opts.seed);
    // Client ids as the SDK makes them: a random prefix per user, then a counter. Not from
    // the seeded generator: a second fill with the same seed must not reuse them (the store
    // refuses a `(sender, id)` it has seen).
    let client_prefix: Vec<String> = (0..opts.users)
        .map(|_| format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff))
        .collect();
    let mut counter = vec![0u64; opts.users as usize];

    let started = Instant::now();
    let mut done = 0u64;
    while done < opts.messages {
        let n = CHUNK.min(opts.messages - done);
        let mut by_shard: Vec<Vec<NewMessage>> = vec![Vec::new(); writers.len()];
        for _ in 0..n {
            let (conv, a, b) = &convs[rng.gen_range(0..convs.len())];
            let (from, to) = if rng.gen_bool(0.5) {
                (*a, *b)
            } else {
                (*b, *a)
            };
            let ts = now_ms();
            counter[from as usize] += 1;
            let msg = NewMessage {
                msg_id: ids.next_at(ts)?,
                conv: conv.clone(),
                from: names[from as usize].clone(),
                client_id: format!(
                    "{}{:x}",
                    client_prefix[from as usize], counter[from as usize]
                ),
                ts,
                content: serde_json::json!({
                    "to": names[to as usize],
                    "body": body(&mut rng, opts.body_size),
                }),
            };
            by_shard[store.conv_shard(conv)].push(msg);
        }
        write_chunk(store, &mut writers, by_shard)?;
        store.flush()?;
        done += n;
    }
    let fill_s = started.elapsed().as_secs_f64();
    Ok(FillReport {
        messages: opts.messages,
        users: opts.users,
        users_created: created,
        convs: opts.convs,
        body_size: opts.body_size,
        users_s,
        fill_s,
        msgs_per_s: if fill_s > 0.0 {
            (opts.messages as f64 / fill_s).round()
        } else {
            0.0
        },
        db_bytes: store.size_on_disk()?,
    })
}

/// Stores one chunk as the node's workers store a round: each shard's messages in one batch,
/// then every inbox entry (one batch per inbox shard, each user's in the order the messages
/// were stored), then clears the batch markers.
fn write_chunk(
    store: &Store,
    writers: &mut [ConvWriter],
    by_shard: Vec<Vec<NewMessage>>,
) -> Result<(), FillError> {
    let mut inbox: Vec<(String, InboxItem)> = Vec::new();
    for (writer, batch) in writers.iter_mut().zip(by_shard) {
        if batch.is_empty() {
            continue;
        }
        for msg in writer.append(batch)? {
            let to = msg
                .content
                .get("to")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let (conv, seq) = (msg.conv, msg.seq);
            let sent = InboxItem::Sent {
                conv: conv.clone(),
                seq,
            };
            inbox.push((msg.from, sent));
            inbox.push((to, InboxItem::Msg { conv, seq }));
        }
    }
    store.inbox_append_many(&inbox, Appending::New)?;
    for writer in writers {
        writer.clear_batch_pending()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_members_are_distinct_and_spread() {
        for users in [2, 3, 10, 1000] {
            for c in 0..3 * users {
                let (a, b) = members(c, users);
                assert!(a != b && a < users && b < users, "{c} of {users}: {a} {b}");
            }
        }
        let partners: std::collections::HashSet<u32> =
            (0..5).map(|round| members(round * 10, 10).1).collect();
        assert_eq!(partners.len(), 5, "user 0 gets a new partner each round");
    }

    #[test]
    fn bodies_have_the_asked_size() {
        let mut rng = StdRng::seed_from_u64(1);
        for size in [1, 7, 100, 4000] {
            let b = body(&mut rng, size);
            assert_eq!(b.len(), size);
            assert!(b.bytes().all(|c| c.is_ascii_lowercase() || c == b' '));
        }
    }
}
