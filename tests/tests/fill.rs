//! `chatd fill` (run as `chatd-under-test fill`) writes messages a node then serves as its own:
//! after filling a stopped node's data directory with 1,000 messages among 8 users and
//! restarting it, every user's `sync` returns a gapless inbox (`n` = 1..) holding exactly one
//! `sent` per message they sent and one `msg` per message sent to them (1,000 of each in all,
//! each with its 100-byte body), a conversation's history has gapless `seq` matching what
//! sync showed, and a new send continues that conversation's `seq` and both inboxes' `n`.

use std::collections::{BTreeMap, HashMap};

use chat_tests::chat::{http_history_all, str_of, u64_of, ChatDevice};
use chat_tests::{chatd_binary, TestNode};
use serde_json::Value;

const MESSAGES: u64 = 1000;
const USERS: usize = 8;
const PASSWORD: &str = "fill-password-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filled_data_dir_is_served_like_the_nodes_own_messages() {
    let node = TestNode::start().await;
    let mut fill_out = String::new();
    let node = node
        .restart_with(|cfg| {
            let out = std::process::Command::new(chatd_binary())
                .arg("--data-dir")
                .arg(&cfg.node.data_dir)
                .args(["fill", "--messages", &MESSAGES.to_string()])
                .args(["--users", &USERS.to_string(), "--convs", "12"])
                .env("CHATD__STORE__PASSWORD_MEMORY_KIB", "256")
                .env("CHATD__STORE__PASSWORD_ITERATIONS", "1")
                .output()
                .expect("running chatd fill");
            fill_out = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "chatd fill failed: {fill_out}{}",
                String::from_utf8_lossy(&out.stderr)
            );
        })
        .await;
    let report: Value = serde_json::from_str(fill_out.trim()).expect("fill prints one JSON line");
    assert_eq!(report["messages"], MESSAGES, "{report}");
    assert_eq!(report["users_created"], USERS, "{report}");
    assert!(
        report["db_bytes"].as_u64().unwrap_or(0) > MESSAGES * 100,
        "{report}"
    );

    // Every user's inbox, through sync.
    let mut sent = 0;
    let mut received = 0;
    // conv -> seqs seen (from the sender's `sent` events).
    let mut seqs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut last_n = HashMap::new();
    let mut devices = HashMap::new();
    for i in 0..USERS {
        let user = format!("f{i}");
        let token = node.login(&user, PASSWORD).await;
        let enrolment = node.enrol(&token, "phone").await;
        let mut device = ChatDevice::connect_node(&node, &enrolment).await;
        let events = device.sync_all(0, 300).await;
        for (k, e) in events.iter().enumerate() {
            assert_eq!(u64_of(e, "n"), k as u64 + 1, "{user}: gapless n: {e}");
            assert_eq!(str_of(e, "body").len(), 100, "{user}: {e}");
            match str_of(e, "type") {
                "sent" => {
                    sent += 1;
                    // A `sent` names the recipient; the conversation is the pair.
                    let to = str_of(e, "to");
                    assert_ne!(to, user, "{e}");
                    let mut pair = [user.as_str(), to];
                    pair.sort_unstable();
                    assert_eq!(str_of(e, "conv"), format!("d.{}.{}", pair[0], pair[1]));
                    seqs.entry(str_of(e, "conv").to_owned())
                        .or_default()
                        .push(u64_of(e, "seq"));
                }
                "msg" => {
                    received += 1;
                    assert_ne!(str_of(e, "from"), user, "{e}");
                }
                other => panic!("{user}: unexpected {other}: {e}"),
            }
        }
        last_n.insert(user.clone(), events.len() as u64);
        devices.insert(user, (token, device));
    }
    assert_eq!((sent, received), (MESSAGES, MESSAGES));
    assert!(seqs.len() > 1, "messages are spread over conversations");

    // One conversation's history: gapless seq, the same count sync showed.
    let (conv, conv_seqs) = seqs.iter().next().expect("a conversation");
    let mut expected = conv_seqs.clone();
    expected.sort_unstable();
    assert_eq!(expected, (1..=expected.len() as u64).collect::<Vec<_>>());
    let members: Vec<&str> = conv.split('.').skip(1).collect();
    let (token, _) = &devices[members[0]];
    let history = http_history_all(&node.client, &node.http, token, conv).await;
    let mut history_seqs: Vec<u64> = history.iter().map(|m| u64_of(m, "seq")).collect();
    history_seqs.sort_unstable();
    assert_eq!(history_seqs, expected, "history of {conv}");

    // The node carries on where the fill stopped.
    let (a, b) = (members[0].to_owned(), members[1].to_owned());
    let (_, device) = devices.get_mut(&a).expect("device");
    device.send("after-fill", &b, "hello after the fill").await;
    let sent_event = device.expect_user_event("sent").await;
    assert_eq!(u64_of(&sent_event, "seq"), expected.len() as u64 + 1);
    assert_eq!(u64_of(&sent_event, "n"), last_n[&a] + 1);
    let (_, other) = devices.get_mut(&b).expect("device");
    let msg = other.expect_user_event("msg").await;
    assert_eq!(u64_of(&msg, "n"), last_n[&b] + 1, "{msg}");
    node.stop().await;
}
