//! Topic rules: a connection of user `u` may only touch topics under `/tenants/{u}/`.
//!
//! These checks run in the front end before anything reaches rumqttd, whose own tenant prefix
//! check (`tenant_id` on the link) is the second line of defence.

use rumqttd::protocol::{has_wildcards, valid_filter, valid_topic};

/// The topic prefix every topic of `user` starts with.
pub fn tenant_prefix(user: &str) -> String {
    format!("/tenants/{user}/")
}

/// Ids (user, device) are 1-32 characters of `[a-z0-9]`; rumqttd needs tenant ids to be
/// alphanumeric, and the rest of the system relies on ids needing no escaping.
pub fn valid_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// May `user` subscribe to `filter`? Shared subscriptions (`$share/...`) are refused, and so
/// is any filter that could match a topic outside the user's prefix.
pub fn filter_allowed(user: &str, filter: &str) -> bool {
    filter.starts_with(&tenant_prefix(user)) && valid_filter(filter) && !filter.contains('\0')
}

/// May `user` publish to `topic`? It must be a concrete topic (no wildcards) under the prefix.
pub fn topic_allowed(user: &str, topic: &str) -> bool {
    topic.starts_with(&tenant_prefix(user))
        && valid_topic(topic)
        && !has_wildcards(topic)
        && !topic.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(valid_id("alice"));
        assert!(valid_id("a1"));
        assert!(valid_id(&"a".repeat(32)));
        assert!(!valid_id(""));
        assert!(!valid_id(&"a".repeat(33)));
        assert!(!valid_id("Alice"));
        assert!(!valid_id("al.ce"));
        assert!(!valid_id("al/ce"));
        assert!(!valid_id("al+"));
    }

    #[test]
    fn filters() {
        assert!(filter_allowed("alice", "/tenants/alice/in"));
        assert!(filter_allowed("alice", "/tenants/alice/in/phone"));
        assert!(filter_allowed("alice", "/tenants/alice/#"));
        assert!(filter_allowed("alice", "/tenants/alice/in/+"));
        assert!(!filter_allowed("alice", "#"));
        assert!(!filter_allowed("alice", "/tenants/+/in"));
        assert!(!filter_allowed("alice", "/tenants/#"));
        assert!(!filter_allowed("alice", "/tenants/bob/in"));
        assert!(!filter_allowed("alice", "/tenants/alicex/in"));
        assert!(!filter_allowed("alice", "/tenants/alice"));
        assert!(!filter_allowed("alice", "$share/g/tenants/alice/in"));
        assert!(!filter_allowed("alice", "/tenants/alice/a#"));
    }

    #[test]
    fn topics() {
        assert!(topic_allowed("alice", "/tenants/alice/out"));
        assert!(topic_allowed("alice", "/tenants/alice/status"));
        assert!(!topic_allowed("alice", "/tenants/bob/out"));
        assert!(!topic_allowed("alice", "/tenants/alice/+"));
        assert!(!topic_allowed("alice", "/tenants/alice/#"));
        assert!(!topic_allowed("alice", "/tenants/alicebob/out"));
        assert!(!topic_allowed("alice", "out"));
    }
}
