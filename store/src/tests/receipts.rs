use super::{convs_on_shard, open_tmp, TS};
use crate::{ReceiptStatus, StoreError, Watermark};

fn wm(delivered: u64, read: u64) -> Watermark {
    Watermark { delivered, read }
}

#[test]
fn receipts_move_forward_only_and_read_implies_delivered() {
    let (_dir, store, _) = open_tmp();
    let c = convs_on_shard(&store, 2, 1).remove(0);
    let mut w = store.conv_writer(2).unwrap();
    assert_eq!(store.receipt(&c, "bob").unwrap(), Watermark::default());
    let mut set = |status, seq| {
        w.set_receipt(&c, "bob", status, seq)
            .unwrap()
            .map(|(_old, new)| new)
    };
    assert_eq!(set(ReceiptStatus::Delivered, 3), Some(wm(3, 0)));
    assert_eq!(set(ReceiptStatus::Delivered, 3), None);
    assert_eq!(set(ReceiptStatus::Delivered, 2), None);
    assert_eq!(set(ReceiptStatus::Read, 2), Some(wm(3, 2)));
    assert_eq!(set(ReceiptStatus::Read, 1), None);
    assert_eq!(set(ReceiptStatus::Read, 5), Some(wm(5, 5)));
    assert_eq!(set(ReceiptStatus::Delivered, 4), None);
    assert_eq!(set(ReceiptStatus::Delivered, 7), Some(wm(7, 5)));
    assert_eq!(store.receipt(&c, "bob").unwrap(), wm(7, 5));
    // Per user, and per conversation.
    assert_eq!(store.receipt(&c, "bo").unwrap(), Watermark::default());
    assert_eq!(store.receipt("d.x.y", "bob").unwrap(), Watermark::default());
    assert_eq!(store.receipt(&c, "Bad").unwrap(), Watermark::default());
    for err in [
        w.set_receipt(&c, "bob", ReceiptStatus::Read, 0)
            .unwrap_err(),
        w.set_receipt(&c, "B", ReceiptStatus::Read, 1).unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::InvalidInput(_)), "{err:?}");
    }
}

#[test]
fn receipt_serde_names() {
    let json = serde_json::to_string(&ReceiptStatus::Delivered).unwrap();
    assert_eq!(json, r#""delivered""#);
    let back: ReceiptStatus = serde_json::from_str(r#""read""#).unwrap();
    assert_eq!(back, ReceiptStatus::Read);
}

#[test]
fn corrupt_watermark_is_an_error() {
    let (_dir, store, _) = open_tmp();
    let c = convs_on_shard(&store, 0, 1).remove(0);
    let mut key = vec![b'r'];
    key.extend_from_slice(c.as_bytes());
    key.extend_from_slice(b"\0bob");
    store
        .shard_tree("conv", 0)
        .unwrap()
        .insert(key, &b"[1"[..])
        .unwrap();
    assert!(matches!(
        store.receipt(&c, "bob"),
        Err(StoreError::Corrupt(_))
    ));
    let mut w = store.conv_writer(0).unwrap();
    assert!(matches!(
        w.set_receipt(&c, "bob", ReceiptStatus::Read, 1),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn last_seen() {
    let (_dir, store, _) = open_tmp();
    assert_eq!(store.last_seen("alice").unwrap(), None);
    store.set_last_seen("alice", TS).unwrap();
    store.set_last_seen("alice", TS + 5).unwrap();
    assert_eq!(store.last_seen("alice").unwrap(), Some(TS + 5));
    assert_eq!(store.last_seen("alic").unwrap(), None);
    assert_eq!(store.last_seen("Alice").unwrap(), None);
    assert!(matches!(
        store.set_last_seen("Alice", TS),
        Err(StoreError::InvalidInput(_))
    ));
    store
        .db()
        .open_tree("lastseen")
        .unwrap()
        .insert("bob", &b"x"[..])
        .unwrap();
    assert!(matches!(
        store.last_seen("bob"),
        Err(StoreError::Corrupt(_))
    ));
}
