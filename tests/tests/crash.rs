//! Crash safety of the real `chatd` binary: it is killed with SIGKILL while a client sends as
//! fast as it can, three times over, and restarted on the same data directory each time. Every
//! message that got `sent` must be stored exactly once, at the `seq` its `sent` named; retries
//! of unanswered sends must not duplicate anything; and the recipient's inbox, whose fan-out may
//! have been cut short by the crash, must be complete and gapless after restart.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use chat_tests::chat::{
    account, http_history_all, send_windowed, str_of, u64_of, ChatDevice, SentRecord, WindowRun,
};
use chat_tests::ChatdProcess;

const ROUNDS: usize = 3;
/// Sends per round; far more than fit before the kill.
const PER_ROUND: usize = 100_000;
const WINDOW: usize = 64;

fn body_of(id: &str) -> String {
    format!("crash test message {id}")
}

/// Starts `chatd` on `data`, logging to `dir/chatd-{i}.log`.
async fn start(dir: &Path, data: &Path, i: usize) -> ChatdProcess {
    ChatdProcess::start(data, &dir.join(format!("chatd-{i}.log"))).await
}

/// Sends `ids` from alice to bob until every one is answered; returns the records by id.
async fn send_all(
    chatd: &ChatdProcess,
    alice: &chat_tests::Enrolment,
    ids: Vec<String>,
) -> WindowRun {
    let mut dev = ChatDevice::connect(chatd.mqtt, alice).await;
    let n = ids.len();
    let run = send_windowed(&mut dev, "bob", ids, WINDOW, body_of).await;
    assert_eq!(
        run.acked.len(),
        n,
        "retries: {} of {n} answered (ended {:?}, stalled {}); log:\n{}",
        run.acked.len(),
        run.ended,
        run.stalled,
        chatd.log_text()
    );
    assert!(run.unexpected_sent.is_empty(), "{:?}", run.unexpected_sent);
    run
}

// Three rounds of: alice sends continuously (64 in flight) while chatd is SIGKILLed after a
// varying delay; restart; every send that got no `sent` is retried with the same id, and some
// that did get one are retried too (they must get the same msg_id and seq back). At the end
// the conversation's history holds each answered message exactly once at its seq, with gapless
// seqs and no client id twice, and bob's and alice's inboxes (by `sync`) are gapless and match.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_sends_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut chatd = start(dir.path(), &data, 0).await;
    let (alice_token, alice) = account(&chatd.http, "alice", "laptop").await;
    let (_, bob) = account(&chatd.http, "bob", "phone").await;

    // client id -> what its first `sent` said.
    let mut answered: HashMap<String, SentRecord> = HashMap::new();
    let mut total_before_kill = 0;
    for round in 0..ROUNDS {
        let ids = (0..PER_ROUND).map(|i| format!("r{round}-{i}"));
        let mut dev = ChatDevice::connect(chatd.mqtt, &alice).await;
        let kill_after = Duration::from_millis(400 + 300 * round as u64);
        let (run, ()) = tokio::join!(
            send_windowed(&mut dev, "bob", ids, WINDOW, body_of),
            async {
                tokio::time::sleep(kill_after).await;
                chatd.signal("KILL");
            }
        );
        let status = chatd
            .wait_exit(Duration::from_secs(10))
            .await
            .expect("chatd survived SIGKILL");
        assert!(!status.success(), "SIGKILL exit status {status}");
        assert!(
            run.ended.is_some(),
            "round {round}: the sender did not see the connection end"
        );
        assert!(run.unexpected_sent.is_empty(), "{:?}", run.unexpected_sent);
        assert!(
            !run.acked.is_empty(),
            "round {round}: nothing was answered in {kill_after:?}; log:\n{}",
            chatd.log_text()
        );
        eprintln!(
            "round {round}: killed after {kill_after:?}: {} sends answered, {} unanswered",
            run.acked.len(),
            run.unacked().len()
        );
        total_before_kill += run.acked.len();
        for r in &run.acked {
            answered.insert(r.id.clone(), r.clone());
        }
        drop(dev);

        chatd = start(dir.path(), &data, round + 1).await;
        // Retry everything unanswered, and every 10th answered send of this round.
        let mut retry = run.unacked();
        retry.extend(run.acked.iter().step_by(10).map(|r| r.id.clone()));
        let again = send_all(&chatd, &alice, retry).await;
        for r in again.acked {
            match answered.get(&r.id) {
                Some(first) => assert_eq!(
                    (&first.msg_id, first.seq, first.n),
                    (&r.msg_id, r.seq, r.n),
                    "a retry of {} got a different answer",
                    r.id
                ),
                None => {
                    answered.insert(r.id.clone(), r);
                }
            }
        }
    }
    eprintln!(
        "{total_before_kill} sends answered before the kills, {} messages stored in all",
        answered.len()
    );

    // History: seqs 1..=M, each answered message exactly once at its seq, no id twice.
    let client = reqwest::Client::new();
    let history = http_history_all(&client, &chatd.http, &alice_token, "d.alice.bob").await;
    let mut by_seq: BTreeMap<u64, (String, String)> = BTreeMap::new();
    let mut ids_seen: HashMap<String, u64> = HashMap::new();
    for m in &history {
        let seq = u64_of(m, "seq");
        let body = str_of(m, "body");
        let id = body
            .strip_prefix("crash test message ")
            .unwrap_or_else(|| panic!("unexpected body {body:?}"))
            .to_owned();
        if let Some(prev) = ids_seen.insert(id.clone(), seq) {
            panic!("{id} stored twice, at seq {prev} and {seq}");
        }
        by_seq.insert(seq, (str_of(m, "msg_id").to_owned(), id));
    }
    let m = history.len() as u64;
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=m).collect::<Vec<_>>(),
        "seqs are not gapless"
    );
    assert_eq!(
        m as usize,
        answered.len(),
        "stored messages != answered sends"
    );
    for (id, r) in &answered {
        assert_eq!(
            by_seq.get(&r.seq),
            Some(&(r.msg_id.clone(), id.clone())),
            "{id}: sent said seq {} msg_id {}",
            r.seq,
            r.msg_id
        );
    }

    // Inboxes: bob has one msg per message, n = seq order, gapless; alice one sent per message.
    let mut bob_dev = ChatDevice::connect(chatd.mqtt, &bob).await;
    let events = bob_dev.sync_all(0, 1000).await;
    assert_eq!(events.len() as u64, m, "bob's inbox size");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(str_of(e, "type"), "msg");
        assert_eq!(u64_of(e, "n"), i as u64 + 1, "bob's n is not gapless");
        assert_eq!(u64_of(e, "seq"), i as u64 + 1, "bob's msgs out of order");
        assert_eq!(str_of(e, "msg_id"), by_seq[&(i as u64 + 1)].0);
    }
    let mut alice_dev = ChatDevice::connect(chatd.mqtt, &alice).await;
    let events = alice_dev.sync_all(0, 1000).await;
    assert_eq!(events.len() as u64, m, "alice's inbox size");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(str_of(e, "type"), "sent");
        assert_eq!(u64_of(e, "n"), i as u64 + 1, "alice's n is not gapless");
        let r = &answered[str_of(e, "id")];
        assert_eq!((u64_of(e, "seq"), u64_of(e, "n")), (r.seq, r.n));
    }

    chatd.signal("TERM");
    let status = chatd.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
