//! Disk trouble under a real `chatd` process whose data directory lives on a small tmpfs of its
//! own. When the disk fills up, sends are answered
//! `unavailable` (never a `sent` for a message that is then lost), `/readyz` says why and the
//! HTTP API answers 503 `unavailable`. When space or write access returns, the node reopens its
//! store by itself (same process id, same addresses); retries of the refused sends are stored
//! exactly once, the messages acknowledged before are all there once, in order, at the `seq`
//! their `sent` named, and the recipient's inbox is complete and gapless. A node started on a
//! read-only data directory refuses to start with the reason and leaves the data intact.
//!
//! Mounting the tmpfs needs root (CAP_SYS_ADMIN): without it the tests print a skip notice,
//! unless `CHATD_REQUIRE_ALL=1` (CI), which turns that into a failure.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use chat_tests::chat::{account, http_history_all, str_of, u64_of, ChatDevice, SentRecord};
use chat_tests::{ChatdProcess, TEST_PASSWORD, WAIT};
use serde_json::{json, Value};

/// A tmpfs mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size_mib` MiB, or says why it cannot.
    fn mount(size_mib: u64) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).map_err(|e| e.to_string())?;
        mount_cmd(
            &["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"],
            &path,
        )?;
        Ok(Tmpfs { path, _dir: dir })
    }

    /// `mount -o remount,{options}`, e.g. `ro` or `rw`.
    fn remount(&self, options: &str) {
        mount_cmd(&["-o", &format!("remount,{options}")], &self.path)
            .unwrap_or_else(|e| panic!("remount {options}: {e}"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn mount_cmd(args: &[&str], path: &Path) -> Result<(), String> {
    let out = Command::new("mount")
        .args(args)
        .arg(path)
        .output()
        .map_err(|e| format!("running mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// A tmpfs, or `None` after a skip notice (a failure when `CHATD_REQUIRE_ALL=1`).
fn tmpfs_or_skip(size_mib: u64) -> Option<Tmpfs> {
    match Tmpfs::mount(size_mib) {
        Ok(t) => Some(t),
        Err(why) => {
            assert!(
                std::env::var("CHATD_REQUIRE_ALL").as_deref() != Ok("1"),
                "cannot mount a tmpfs ({why}) and CHATD_REQUIRE_ALL=1: run the tests as root"
            );
            eprintln!("SKIPPED: cannot mount a tmpfs ({why}); run as root to test disk trouble");
            None
        }
    }
}

/// What a `send` got.
#[derive(Debug)]
enum Answer {
    Sent(SentRecord),
    Unavailable,
}

fn body_of(id: &str) -> String {
    // 1 KiB bodies fill the disk quickly.
    format!("disk test message {id} {}", "x".repeat(1000))
}

/// Sends `id` from `dev` to bob and waits for its `sent` or `error` (which must be
/// `unavailable`).
async fn send(dev: &mut ChatDevice, id: &str) -> Answer {
    dev.request(&json!({"type": "send", "id": id, "to": "bob", "body": body_of(id)}))
        .await;
    let answer = dev
        .wait_for(&format!("the answer to send {id}"), WAIT, |r| {
            r.event["id"] == id && matches!(r.kind(), "sent" | "error")
        })
        .await
        .event;
    match answer["type"].as_str() {
        Some("sent") => Answer::Sent(SentRecord::of(&answer)),
        _ => {
            assert_eq!(answer["code"], "unavailable", "{answer}");
            Answer::Unavailable
        }
    }
}

/// `GET /readyz`: the status, or `None` while nothing answers (the node restarting).
async fn readyz(http: &reqwest::Client, base: &str) -> Option<(u16, Value)> {
    let r = http.get(format!("{base}/readyz")).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

/// Fills the file system at `dir` with one file until a write fails with "no space".
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    loop {
        match file.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = file.sync_all();
    path
}

// The disk fills up while alice sends; then space is freed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_refuses_sends_and_recovers_when_space_returns() {
    let Some(tmpfs) = tmpfs_or_skip(48) else {
        return;
    };
    let data = tmpfs.path.join("data");
    let log_dir = tempfile::tempdir().unwrap();
    let mut chatd = ChatdProcess::start(&data, &log_dir.path().join("chatd.log")).await;
    let pid = chatd.child.id().unwrap();
    let (alice_token, alice) = account(&chatd.http, "alice", "laptop").await;
    let (_, bob) = account(&chatd.http, "bob", "phone").await;
    let http = reqwest::Client::new();

    // Before: every send is stored.
    let mut dev = ChatDevice::connect(chatd.mqtt, &alice).await;
    let mut sent: HashMap<String, SentRecord> = HashMap::new();
    for i in 0..20 {
        let id = format!("before-{i}");
        match send(&mut dev, &id).await {
            Answer::Sent(r) => sent.insert(id, r),
            Answer::Unavailable => panic!("{id} refused before any trouble"),
        };
    }

    // The disk fills up: sends go on until the store fails; from then on every one is
    // `unavailable`.
    let filler = fill(&tmpfs.path);
    let mut refused = Vec::new();
    for i in 0..2_000 {
        let id = format!("during-{i}");
        match send(&mut dev, &id).await {
            Answer::Sent(r) => {
                assert!(refused.is_empty(), "{id} got sent after a refusal");
                sent.insert(id, r);
            }
            Answer::Unavailable => {
                refused.push(id);
                if refused.len() == 5 {
                    break;
                }
            }
        }
    }
    assert_eq!(
        refused.len(),
        5,
        "no send was refused; log:\n{}",
        chatd.log_text()
    );
    let (status, body) = readyz(&http, &chatd.http).await.unwrap();
    assert_eq!(
        (status, &body),
        (
            503,
            &json!({"ready": false, "reason": "storage unavailable"})
        )
    );
    let r = http
        .post(format!("{}/v1/users", chatd.http))
        .json(&json!({"user_id": "carol", "password": TEST_PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    drop(dev);

    // Space returns: the same process reopens its store on the same addresses.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, _)) = readyz(&http, &chatd.http).await {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready 30 s after the disk was mended; log:\n{}",
            chatd.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        chatd.child.try_wait().unwrap().is_none(),
        "chatd exited instead of restarting in place"
    );
    assert_eq!(chatd.child.id(), Some(pid));
    assert!(
        chatd.log_text().contains("restarting to reopen the store"),
        "log:\n{}",
        chatd.log_text()
    );

    // Retries of the refused sends are stored; a retry of an acknowledged one gets its first
    // answer again.
    let mut dev = ChatDevice::connect(chatd.mqtt, &alice).await;
    for id in &refused {
        match send(&mut dev, id).await {
            Answer::Sent(r) => sent.insert(id.clone(), r),
            Answer::Unavailable => panic!("retry of {id} refused after recovery"),
        };
    }
    for id in ["before-0", "before-19"] {
        let Answer::Sent(again) = send(&mut dev, id).await else {
            panic!("retry of {id} refused after recovery");
        };
        let first = &sent[id];
        assert_eq!(
            (&again.msg_id, again.seq, again.n),
            (&first.msg_id, first.seq, first.n)
        );
    }

    // History: each acknowledged message exactly once, at its seq, seqs gapless.
    let history = http_history_all(&http, &chatd.http, &alice_token, "d.alice.bob").await;
    let mut seqs: Vec<u64> = history.iter().map(|m| u64_of(m, "seq")).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=sent.len() as u64).collect::<Vec<_>>());
    let by_msg_id: HashMap<&str, (u64, &str)> = history
        .iter()
        .map(|m| (str_of(m, "msg_id"), (u64_of(m, "seq"), str_of(m, "body"))))
        .collect();
    for (id, r) in &sent {
        assert_eq!(
            by_msg_id.get(r.msg_id.as_str()),
            Some(&(r.seq, body_of(id).as_str())),
            "{id}"
        );
    }

    // Bob's inbox: every message once, in seq order, n gapless.
    let mut bob_dev = ChatDevice::connect(chatd.mqtt, &bob).await;
    let events = bob_dev.sync_all(0, 1000).await;
    assert_eq!(events.len(), sent.len(), "bob's inbox");
    for (i, e) in events.iter().enumerate() {
        assert_eq!(
            (str_of(e, "type"), u64_of(e, "n"), u64_of(e, "seq")),
            ("msg", i as u64 + 1, i as u64 + 1)
        );
    }

    chatd.signal("TERM");
    let status = chatd.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}

// A node restarting on a data directory that has turned read-only refuses to start, with the
// reason, and leaves the data as it was; once the file system is writable again it starts and
// has every message. (A tmpfs cannot be remounted read-only under a running node, whose store
// file is open for writing; a disk that fails that way under a running node surfaces as failed
// writes, the path the full-disk test takes.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_data_directory_is_refused_at_start_and_data_kept() {
    let Some(tmpfs) = tmpfs_or_skip(48) else {
        return;
    };
    let data = tmpfs.path.join("data");
    let log_dir = tempfile::tempdir().unwrap();
    let mut chatd = ChatdProcess::start(&data, &log_dir.path().join("chatd-0.log")).await;
    let (alice_token, alice) = account(&chatd.http, "alice", "laptop").await;
    account(&chatd.http, "bob", "phone").await;
    let mut dev = ChatDevice::connect(chatd.mqtt, &alice).await;
    let mut sent = Vec::new();
    for i in 0..10 {
        match send(&mut dev, &format!("m{i}")).await {
            Answer::Sent(r) => sent.push(r),
            Answer::Unavailable => panic!("m{i} refused"),
        }
    }
    drop(dev);
    chatd.signal("TERM");
    assert!(chatd
        .wait_exit(Duration::from_secs(10))
        .await
        .is_some_and(|s| s.success()));

    tmpfs.remount("ro");
    let out = tokio::process::Command::new(chat_tests::chatd_binary())
        .arg("--data-dir")
        .arg(&data)
        .args(["--http", "127.0.0.1:0", "--mqtt", "127.0.0.1:0"])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(30), out)
        .await
        .expect("chatd neither started nor exited on a read-only disk")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "chatd started on a read-only disk");
    assert!(
        stderr.contains("Read-only file system"),
        "no reason given: {stderr}"
    );

    tmpfs.remount("rw");
    let chatd = ChatdProcess::start(&data, &log_dir.path().join("chatd-1.log")).await;
    let history = http_history_all(
        &reqwest::Client::new(),
        &chatd.http,
        &alice_token,
        "d.alice.bob",
    )
    .await;
    let mut stored: Vec<(u64, String)> = history
        .iter()
        .map(|m| (u64_of(m, "seq"), str_of(m, "msg_id").to_owned()))
        .collect();
    stored.sort();
    let expected: Vec<(u64, String)> = sent.iter().map(|r| (r.seq, r.msg_id.clone())).collect();
    assert_eq!(stored, expected);
}
