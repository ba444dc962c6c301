//! Group invites. A user's `groups` privacy setting says who may add them to a group without
//! asking (`everyone`, their `contacts`, `nobody`). On `group_create` and `group_add`, the new
//! members it does not let the adder add are invited instead: a pending invite is stored
//! (tree `group_invites`) and a `group_invite` event goes into their inbox, with an `n`, so it
//! reaches them through `sync` too. `group_join` accepts (the group's shard worker adds them,
//! as an admin would), `group_decline` drops the invite; the inviter is told neither.
//!
//! Everything here runs in the group's shard worker, around `groups::plan`, except
//! [`decline`], which touches no group and runs on the blocking pool.

use chat_proto::ErrorCode;
use chat_store::{GroupInvite, GroupRecord, GroupRole, InboxItem, StoreError};
use tracing::error;

use crate::events;
use crate::groups::{storage_unavailable, GroupJob, GroupOp, Refusal};
use crate::ids::now_ms;
use crate::worker::Origin;
use crate::{privacy, Services};

/// The users of a `group_create`/`group_add` to invite instead of adding.
#[derive(Debug, Default)]
pub(crate) struct Invited {
    /// Who gets an invite.
    pub users: Vec<String>,
    /// A `group_add` with nobody left to add directly: no membership change is stored, only
    /// the invites.
    pub only: bool,
}

fn failed(e: StoreError) -> Refusal {
    error!(error = %e, "group invite storage failed");
    storage_unavailable()
}

/// Before a group change is planned: a `group_join` needs a pending invite (`forbidden`
/// otherwise); a `group_create` or a `group_add` by an admin loses from its member list the
/// users whose `groups` setting does not let the requester add them, returned to be invited.
/// Other refusals (not an admin, no such group or user) are left to `groups::plan`.
pub(crate) fn screen(
    services: &Services,
    current: Option<&GroupRecord>,
    job: &mut GroupJob,
) -> Result<Invited, Refusal> {
    let actor = job.origin.user.as_str();
    let is_admin = current.and_then(|g| g.role(actor)) == Some(GroupRole::Admin);
    let users = match &mut job.op {
        GroupOp::Join => {
            let invite = services
                .store
                .group_invite(actor, &job.group)
                .map_err(failed)?;
            if invite.is_none() || current.is_none() {
                let message = "group: you have no invite to this group";
                return Err((ErrorCode::Forbidden, message.to_owned()));
            }
            return Ok(Invited::default());
        }
        GroupOp::Create { members, .. } => members,
        GroupOp::Add(users) if is_admin => users,
        _ => return Ok(Invited::default()),
    };
    let is_member = |user: &str| current.is_some_and(|g| g.is_member(user));
    let mut invited = Vec::new();
    let mut kept = Vec::with_capacity(users.len());
    for user in users.drain(..) {
        let ask = user != actor
            && !is_member(&user)
            && !privacy::may_add(&services.store, actor, &user).map_err(failed)?;
        if ask {
            invited.push(user);
        } else {
            kept.push(user);
        }
    }
    let only = current.is_some() && !invited.is_empty() && kept.iter().all(|u| is_member(u));
    *users = kept;
    Ok(Invited {
        users: invited,
        only,
    })
}

/// After the change is stored (or instead of one, for [`Invited::only`]): stores each invite
/// and its `group_invite` inbox entry, queued in `publish` for after the round's flush. A user
/// who already has an invite into this group is not told again. A `group_join` drops the
/// invite it used.
pub(crate) fn settle(
    services: &Services,
    job: &GroupJob,
    name: &str,
    invited: &[String],
    publish: &mut Vec<(String, Vec<u8>)>,
) {
    let store = &services.store;
    let actor = job.origin.user.as_str();
    if matches!(job.op, GroupOp::Join) {
        if let Err(e) = store.remove_group_invite(actor, &job.group) {
            error!(error = %e, user = actor, "removing a used invite failed");
        }
    }
    for user in invited {
        match store.group_invite(user, &job.group) {
            Ok(None) => {}
            Ok(Some(_)) => continue,
            Err(e) => {
                error!(error = %e, user, "reading an invite failed");
                continue;
            }
        }
        let ts = now_ms();
        let invite = GroupInvite {
            name: name.to_owned(),
            by: actor.to_owned(),
            ts,
        };
        let body = events::group_invite_body(&job.group, name, actor, ts);
        let stored = store
            .set_group_invite(user, &job.group, &invite)
            .and_then(|()| store.inbox_append(user, vec![InboxItem::Event(body.clone())]));
        match stored {
            Ok(ns) => {
                if let Some(Some(n)) = ns.first() {
                    publish.push((user.clone(), events::with_n(&body, *n)));
                }
            }
            Err(e) => error!(error = %e, user, "storing an invite failed"),
        }
    }
}

/// `group_decline`: drops the pending invite (`not_found` if there is none), flushed before
/// the `ok`. The inviter is not told.
pub(crate) fn decline(services: &Services, origin: &Origin, group: &str) {
    let me = origin.user.as_str();
    let unavailable = |e: &dyn std::fmt::Display| {
        error!(error = %e, "declining an invite failed");
        services.error(origin, None, ErrorCode::Unavailable, "storage unavailable");
    };
    match services.store.remove_group_invite(me, group) {
        Ok(true) => {}
        Ok(false) => {
            let message = "group: you have no invite to this group";
            return services.error(origin, None, ErrorCode::NotFound, message);
        }
        Err(e) => return unavailable(&e),
    }
    if let Err(e) = services.flusher.flush() {
        return unavailable(&e);
    }
    let ok = events::ok(origin.req.as_deref(), "group_decline", None);
    services
        .publisher
        .to_device(me, origin.device.as_deref(), ok);
}
