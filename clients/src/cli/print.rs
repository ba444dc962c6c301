//! How `chat` shows events: one line each, with ticks for the user's own messages (✓ stored
//! on the server, ✓✓ delivered, ✓✓ read), or one JSON object per line with `--json`.

use chat_proto::{Event, MsgEvent, ReceiptStatus, Target};

/// Prints events for `me`.
pub(super) struct Printer {
    me: String,
    json: bool,
}

impl Printer {
    pub(super) fn new(me: String, json: bool) -> Printer {
        Printer { me, json }
    }

    pub(super) fn event(&self, event: &Event) {
        if self.json {
            println!("{}", String::from_utf8_lossy(&event.to_json()));
            return;
        }
        let line = match event {
            Event::Msg(m) => format!(
                "{} {} -> {}: {}",
                time(m.ts),
                m.from,
                where_(&m.target, &self.me),
                content(m.body.as_deref(), m.media.as_ref())
            ),
            Event::Sent(s) => format!(
                "{} you -> {} #{}: {} ✓",
                time(s.ts),
                where_(&s.target, &self.me),
                s.seq,
                content(s.body.as_deref(), s.media.as_ref())
            ),
            Event::Receipt(r) if r.by == self.me => {
                format!(
                    "{} (you marked {} {} up to #{})",
                    time(r.ts),
                    r.conv,
                    r.status,
                    r.seq
                )
            }
            Event::Receipt(r) => {
                let what = match r.status {
                    ReceiptStatus::Delivered => "delivered to",
                    ReceiptStatus::Read => "read by",
                };
                format!(
                    "{} {} up to #{} ✓✓ {what} {}",
                    time(r.ts),
                    r.conv,
                    r.seq,
                    r.by
                )
            }
            Event::Group(g) => {
                let members: Vec<&str> = g.members.iter().map(|m| m.user.as_str()).collect();
                format!(
                    "{} group {} ({}): {} {} by {}",
                    time(g.ts),
                    g.group,
                    g.name,
                    g.event,
                    members.join(", "),
                    g.by
                )
            }
            Event::Presence(p) => match p.last_seen {
                Some(seen) => format!("{} is {} (last seen {})", p.user, p.state, utc(seen)),
                None => format!("{} is {}", p.user, p.state),
            },
            Event::Typing(t) => format!("{} {} typing in {}", t.from, t.state, t.conv),
            Event::Error(e) => format!("error from the server: {} ({})", e.message, e.code),
            other => String::from_utf8_lossy(&other.to_json()).into_owned(),
        };
        println!("{line}");
    }

    /// One message of a history page.
    pub(super) fn history_line(&self, m: &MsgEvent) {
        if self.json {
            println!(
                "{}",
                String::from_utf8_lossy(&Event::Msg(m.clone()).to_json())
            );
            return;
        }
        let from = if m.from == self.me { "you" } else { &m.from };
        println!(
            "#{} {} {from}: {}",
            m.seq,
            time(m.ts),
            content(m.body.as_deref(), m.media.as_ref())
        );
    }
}

fn where_(target: &Target, me: &str) -> String {
    match target {
        Target::To(user) if user == me => "you".into(),
        Target::To(user) => user.clone(),
        Target::Group(group) => format!("group {group}"),
    }
}

fn content(body: Option<&str>, media: Option<&chat_proto::Media>) -> String {
    match (body, media) {
        (Some(b), None) => b.to_owned(),
        (b, Some(m)) => format!(
            "{}[file {} {} bytes, {}]",
            b.map(|b| format!("{b} ")).unwrap_or_default(),
            m.mime,
            m.size,
            m.media_id
        ),
        (None, None) => String::new(),
    }
}

/// `[HH:MM:SS]` (UTC) of a unix-ms timestamp.
fn time(ts_ms: u64) -> String {
    let secs = ts_ms / 1000 % 86_400;
    format!(
        "[{:02}:{:02}:{:02}]",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// `YYYY-MM-DD HH:MM UTC` of a unix-ms timestamp.
pub(super) fn utc(ts_ms: u64) -> String {
    let secs = ts_ms / 1000;
    let days = (secs / 86_400) as i64;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let s = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        s / 3600,
        s / 60 % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_709_164_800_000), "2024-02-29 00:00 UTC");
        assert_eq!(utc(1_795_436_700_323), "2026-11-23 12:25 UTC");
        assert_eq!(time(1_795_436_700_323), "[12:25:00]");
    }
}
