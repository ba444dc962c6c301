//! Group membership changes, run by the worker that owns the group's conversation shard so that
//! a change and the group's messages have one order: a message is fanned out to the members it
//! was stored with, and a member removed at `seq` k gets nothing stored after k.
//!
//! Each change is stored as a system entry of the conversation `g.{group}` (it has a `seq`,
//! shows in `history`, and reaches inboxes as a `group` event) together with the new member
//! list, in one atomic write ([`chat_store::ConvWriter::group_change`]).

use chat_proto::ErrorCode;
use chat_store::{ConvWriter, GroupMember, GroupRecord, GroupRole, NewMessage};
use serde_json::{json, Value};
use tracing::error;

use crate::ids::now_ms;
use crate::worker::Origin;
use crate::Services;

/// Members a group may have when the config says nothing.
pub const DEFAULT_MAX_MEMBERS: usize = 256;
/// The most any config may allow.
pub const MAX_MEMBERS_CAP: usize = 1024;

/// What a `group_*` request asks for.
#[derive(Debug)]
pub(crate) enum GroupOp {
    Create { name: String, members: Vec<String> },
    Add(Vec<String>),
    Remove(Vec<String>),
    Leave,
    Join,
}

impl GroupOp {
    pub(crate) fn request_name(&self) -> &'static str {
        match self {
            GroupOp::Create { .. } => "group_create",
            GroupOp::Add(_) => "group_add",
            GroupOp::Remove(_) => "group_remove",
            GroupOp::Leave => "group_leave",
            GroupOp::Join => "group_join",
        }
    }
}

#[derive(Debug)]
pub(crate) struct GroupJob {
    pub origin: Origin,
    pub group: String,
    pub op: GroupOp,
    /// Where the outcome goes instead of an MQTT answer (a [`crate::BridgeHandle`] request).
    pub reply: Option<GroupReply>,
}

/// The outcome of a group change asked for through a [`crate::BridgeHandle`]: sent once the
/// change is stored and flushed, or refused.
pub(crate) type GroupReply = tokio::sync::oneshot::Sender<Result<(), Refusal>>;

/// A refusal: the error code and message for the requester.
pub(crate) type Refusal = (ErrorCode, String);

/// The refusal for a request the store could not serve (log the cause first).
pub(crate) fn storage_unavailable() -> Refusal {
    (ErrorCode::Unavailable, "storage unavailable".to_owned())
}

fn refuse<T>(code: ErrorCode, message: impl Into<String>) -> Result<T, Refusal> {
    Err((code, message.into()))
}

/// A change ready to store: the new record, the system entry and who gets it.
pub(crate) struct Change {
    pub record: GroupRecord,
    pub entry: NewMessage,
    pub recipients: Vec<String>,
}

/// Works out a change against the current record (`None` if the group does not exist);
/// nothing is written here.
pub(crate) fn plan(
    services: &Services,
    current: Option<&GroupRecord>,
    job: &GroupJob,
) -> Result<Change, Refusal> {
    let actor = job.origin.user.as_str();
    let not_member = || refuse(ErrorCode::Forbidden, "not a member of this group");
    let (record, event, listed, gone) = match (&job.op, current) {
        (GroupOp::Create { name, members }, None) => {
            let mut record = GroupRecord {
                id: job.group.clone(),
                name: name.clone(),
                created_by: actor.to_owned(),
                created_at: now_ms(),
                members: vec![GroupMember::new(actor, GroupRole::Admin)],
            };
            let new = new_members(services, &record, members)?;
            check_size(services, record.members.len() + new.len())?;
            record.members.extend(new);
            let listed = record.members.clone();
            (record, "created", listed, Vec::new())
        }
        (GroupOp::Create { .. }, Some(_)) => {
            return refuse(ErrorCode::Conflict, "group id already in use; retry")
        }
        (_, None) => return not_member(),
        (GroupOp::Add(users), Some(current)) => {
            require_admin(current, actor)?;
            let new = new_members(services, current, users)?;
            if new.is_empty() {
                return refuse(ErrorCode::Conflict, "members: already in the group");
            }
            check_size(services, current.members.len() + new.len())?;
            let mut record = current.clone();
            record.members.extend(new.iter().cloned());
            (record, "added", new, Vec::new())
        }
        // Accepting an invite (checked by `invites.rs`): added as an admin would add them.
        (GroupOp::Join, Some(current)) => {
            if current.is_member(actor) {
                return refuse(ErrorCode::Conflict, "group: you are a member already");
            }
            check_size(services, current.members.len() + 1)?;
            let joined = GroupMember::new(actor, GroupRole::Member);
            let mut record = current.clone();
            record.members.push(joined.clone());
            (record, "added", vec![joined], Vec::new())
        }
        (GroupOp::Remove(users), Some(current)) => {
            require_admin(current, actor)?;
            if users.iter().any(|u| u == actor) {
                return refuse(
                    ErrorCode::BadRequest,
                    "members: use group_leave to leave a group",
                );
            }
            let removed: Vec<GroupMember> = current
                .members
                .iter()
                .filter(|m| users.contains(&m.user))
                .cloned()
                .collect();
            if removed.is_empty() {
                return refuse(ErrorCode::NotFound, "members: none of them is in the group");
            }
            let mut record = current.clone();
            record.members.retain(|m| !users.contains(&m.user));
            let gone = removed.iter().map(|m| m.user.clone()).collect();
            (record, "removed", removed, gone)
        }
        (GroupOp::Leave, Some(current)) => {
            let Some(role) = current.role(actor) else {
                return not_member();
            };
            let mut record = current.clone();
            record.members.retain(|m| m.user != actor);
            let mut listed = vec![GroupMember::new(actor, role)];
            // The last admin leaving hands the group to its longest-standing member.
            let admin_left = !record.members.iter().any(|m| m.role == GroupRole::Admin);
            if let (true, Some(first)) = (admin_left, record.members.first_mut()) {
                first.role = GroupRole::Admin;
                listed.push(first.clone());
            }
            (record, "left", listed, vec![actor.to_owned()])
        }
    };
    // Everyone in the group after the change, and those who just left it.
    let mut recipients: Vec<String> = record.member_ids().map(str::to_owned).collect();
    recipients.extend(gone.iter().cloned());
    let msg_id = services.ids.next_id().map_err(|e| {
        error!(error = %e, "message id reservation failed");
        storage_unavailable()
    })?;
    let content = json!({
        "group": record.id,
        "system": {
            "event": event,
            "name": record.name,
            "members": members_json(&listed),
            "gone": gone,
        },
    });
    let entry = NewMessage {
        msg_id,
        conv: record.conv(),
        from: actor.to_owned(),
        // System entries need no idempotency; a unique id keeps the store's rule satisfied.
        client_id: format!("~{msg_id}"),
        ts: now_ms(),
        content,
    };
    Ok(Change {
        record,
        entry,
        recipients,
    })
}

fn require_admin(record: &GroupRecord, user: &str) -> Result<(), Refusal> {
    match record.role(user) {
        Some(GroupRole::Admin) => Ok(()),
        Some(GroupRole::Member) => refuse(ErrorCode::Forbidden, "only admins can do that"),
        None => refuse(ErrorCode::Forbidden, "not a member of this group"),
    }
}

fn check_size(services: &Services, size: usize) -> Result<(), Refusal> {
    let max = services.config.max_group_members;
    if size > max {
        return refuse(
            ErrorCode::TooLarge,
            format!("members: a group has at most {max} members (this would make {size})"),
        );
    }
    Ok(())
}

/// The users of `users` who are not yet members, as new members; each must exist.
fn new_members(
    services: &Services,
    record: &GroupRecord,
    users: &[String],
) -> Result<Vec<GroupMember>, Refusal> {
    let mut out = Vec::new();
    for user in users {
        if record.is_member(user) {
            continue;
        }
        match services.store.user(user) {
            Ok(Some(_)) => out.push(GroupMember::new(user.clone(), GroupRole::Member)),
            Ok(None) => return refuse(ErrorCode::NotFound, format!("members: no user {user:?}")),
            Err(e) => {
                error!(error = %e, "user lookup failed");
                return Err(storage_unavailable());
            }
        }
    }
    Ok(out)
}

/// Members as wire JSON: `[{user, role}]`.
pub(crate) fn members_json(members: &[GroupMember]) -> Value {
    Value::Array(
        members
            .iter()
            .map(|m| {
                let role = match m.role {
                    GroupRole::Admin => "admin",
                    GroupRole::Member => "member",
                };
                json!({"user": m.user, "role": role})
            })
            .collect(),
    )
}

/// The group record, through the worker's cache (the worker is the group's only writer, so
/// the cache never goes stale).
pub(crate) struct GroupCache {
    groups: std::collections::HashMap<String, Option<GroupRecord>>,
}

/// Cached groups per worker before the cache is emptied.
const GROUP_CACHE_MAX: usize = 10_000;

impl GroupCache {
    pub(crate) fn new() -> GroupCache {
        GroupCache {
            groups: std::collections::HashMap::new(),
        }
    }

    pub(crate) fn get(
        &mut self,
        writer: &ConvWriter,
        group: &str,
    ) -> Result<Option<&GroupRecord>, chat_store::StoreError> {
        if !self.groups.contains_key(group) {
            let record = writer.group(group)?;
            if self.groups.len() >= GROUP_CACHE_MAX {
                self.groups.clear();
            }
            self.groups.insert(group.to_owned(), record);
        }
        Ok(self.groups.get(group).and_then(Option::as_ref))
    }

    pub(crate) fn put(&mut self, record: GroupRecord) {
        self.groups.insert(record.id.clone(), Some(record));
    }
}
