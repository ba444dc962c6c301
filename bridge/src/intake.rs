//! Reading device requests from a router partition and dispatching them.

use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Instant;

use chat_broker::{LinkRx, Notification};
use chat_proto::{parse_request, parse_status, ErrorCode, Request, Status, Target};
use chat_store::Store;
use tracing::{debug, error, warn};

use crate::groups::{GroupJob, GroupOp, GroupReply};
use crate::limits::{Limited, RateLimiter};
use crate::presence::{self, Transition};
use crate::worker::{Job, Origin, ReceiptJob, SendJob};
use crate::{invites, privacy, reads, social, Services};

/// Routes parsed requests to workers and readers, after the rate limits.
pub(crate) struct Dispatch {
    services: Arc<Services>,
    shards: Vec<Sender<Job>>,
    limiter: RateLimiter,
}

impl Dispatch {
    pub(crate) fn new(services: Arc<Services>, shards: Vec<Sender<Job>>) -> Dispatch {
        let limiter = RateLimiter::new(services.config.requests, services.config.sends);
        Dispatch {
            services,
            shards,
            limiter,
        }
    }

    fn store(&self) -> &Store {
        &self.services.store
    }

    /// Handles one publish from a device.
    fn on_publish(&self, topic: &[u8], payload: &[u8]) {
        let Some((user, kind)) = split_topic(topic) else {
            return debug!(topic = %String::from_utf8_lossy(topic), "ignoring publish on an unknown topic");
        };
        match kind {
            "out" => self.on_request(user, payload),
            "status" => match parse_status(payload) {
                Ok(status) => self.on_status(user, &status),
                Err(e) => {
                    self.services.stats.requests.inc("invalid");
                    let origin = Origin {
                        user: user.to_owned(),
                        device: e.device.clone(),
                        req: e.req.clone(),
                    };
                    self.services.error(&origin, None, e.code, &e.message);
                }
            },
            _ => {}
        }
    }

    /// `online`/`offline` from a connected device: an away device gets no live events (they
    /// wait in the inbox for `sync`); watchers hear when the user as a whole comes or goes.
    fn on_status(&self, user: &str, status: &Status) {
        self.services.stats.requests.inc("status");
        let (device, present) = match status {
            Status::Online { device } => (device, true),
            Status::Offline { device } => (device, false),
        };
        // The connection this status came on is known before the status applies.
        self.services.catch_up_presence();
        let online = match self.services.presence.status(user, device, present) {
            Transition::CameOnline => true,
            Transition::WentOffline => false,
            Transition::None => return,
        };
        tokio::spawn(presence::changed(
            self.services.clone(),
            user.to_owned(),
            online,
        ));
    }

    fn on_request(&self, user: &str, payload: &[u8]) {
        let received = Instant::now();
        let requests = &self.services.stats.requests;
        let env = match parse_request(payload) {
            Ok(env) => {
                requests.inc(env.request.name());
                env
            }
            Err(e) => {
                requests.inc("invalid");
                let origin = Origin {
                    user: user.to_owned(),
                    device: e.device.clone(),
                    req: e.req.clone(),
                };
                // Garbage costs a token too, so a flood of it is cut short like any other.
                let _ = self.limiter.check(user, false);
                return self
                    .services
                    .error(&origin, e.id.as_deref(), e.code, &e.message);
            }
        };
        let origin = Origin {
            user: user.to_owned(),
            device: env.device,
            req: env.req,
        };
        let send_id = match &env.request {
            Request::Send(send) => Some(send.id.as_str()),
            _ => None,
        };
        if let Err(limited) = self.limiter.check(user, send_id.is_some()) {
            let message = match limited {
                Limited::Requests => "too many requests; slow down and retry",
                Limited::Sends => "too many messages; slow down and retry with the same id",
            };
            return self
                .services
                .error(&origin, send_id, ErrorCode::RateLimited, message);
        }
        match env.request {
            Request::Send(send) => self.on_send(origin, send, received),
            Request::Receipt(r) => {
                let job = ReceiptJob {
                    origin,
                    conv: r.conv,
                    status: r.status,
                    seq: r.seq,
                };
                self.to_shard(Job::Receipt(job));
            }
            Request::Sync(chat_proto::SyncRequest { after, limit }) => {
                let (services, user) = (self.services.clone(), user.to_owned());
                tokio::task::spawn_blocking(move || {
                    reads::answer_sync(&services, &origin, &user, after, limit)
                });
            }
            Request::History(chat_proto::HistoryRequest {
                conv,
                before,
                limit,
            }) => {
                let services = self.services.clone();
                tokio::task::spawn_blocking(move || {
                    reads::answer_history(&services, &origin, &conv, before, limit)
                });
            }
            Request::GroupCreate(chat_proto::GroupCreateRequest { name, members }) => {
                // Snowflake ids are unique per node; base 36 keeps them short.
                let group = match self.services.ids.next_id() {
                    Ok(id) => base36(id),
                    Err(e) => {
                        error!(error = %e, "group id reservation failed");
                        return self.services.error(
                            &origin,
                            None,
                            ErrorCode::Unavailable,
                            "storage unavailable",
                        );
                    }
                };
                let op = GroupOp::Create { name, members };
                self.group_job(origin, group, op);
            }
            Request::GroupAdd(r) => self.group_job(origin, r.group, GroupOp::Add(r.members)),
            Request::GroupRemove(r) => self.group_job(origin, r.group, GroupOp::Remove(r.members)),
            Request::GroupLeave { group } => self.group_job(origin, group, GroupOp::Leave),
            Request::GroupJoin { group } => self.group_job(origin, group, GroupOp::Join),
            Request::GroupDecline { group } => {
                let services = self.services.clone();
                tokio::task::spawn_blocking(move || invites::decline(&services, &origin, &group));
            }
            Request::GroupInfo { group } => {
                let services = self.services.clone();
                tokio::task::spawn_blocking(move || {
                    reads::answer_group_info(&services, &origin, &group)
                });
            }
            Request::PresenceSub { users } => {
                let services = self.services.clone();
                tokio::task::spawn_blocking(move || {
                    social::presence_sub(&services, &origin, &users)
                });
            }
            Request::Typing(t) => {
                let conv = match t.target.conv(user) {
                    Ok(conv) => conv,
                    Err(_) => {
                        return self.services.error(
                            &origin,
                            None,
                            ErrorCode::BadRequest,
                            "to: cannot type to yourself",
                        )
                    }
                };
                let services = self.services.clone();
                tokio::task::spawn_blocking(move || {
                    social::typing(&services, &origin, &conv, t.state)
                });
            }
            Request::Block { user: other } => self.block(origin, other, true),
            Request::Unblock { user: other } => self.block(origin, other, false),
            Request::PushRegister(r) => {
                let services = self.services.clone();
                tokio::task::spawn_blocking(move || {
                    let token = Some((r.platform.as_str(), r.token.as_str()));
                    social::push_token(&services, &origin, token)
                });
            }
            Request::Privacy(request) => {
                let services = self.services.clone();
                tokio::task::spawn_blocking(move || privacy::privacy(&services, &origin, &request));
            }
            Request::PushUnregister => {
                let services = self.services.clone();
                tokio::task::spawn_blocking(move || social::push_token(&services, &origin, None));
            }
        }
    }

    fn on_send(&self, origin: Origin, send: chat_proto::SendRequest, received: Instant) {
        let chat_proto::SendRequest {
            id,
            target,
            body,
            media,
            reply_to,
        } = send;
        let conv = match target.conv(&origin.user) {
            Ok(conv) => conv,
            Err(_) => {
                return self.services.error(
                    &origin,
                    Some(&id),
                    ErrorCode::BadRequest,
                    "to: cannot send a message to yourself",
                );
            }
        };
        let mut content = serde_json::Map::new();
        match target {
            Target::To(to) => content.insert("to".into(), to.into()),
            Target::Group(group) => content.insert("group".into(), group.into()),
        };
        if let Some(body) = body {
            content.insert("body".into(), body.into());
        }
        if let Some(media) = media {
            content.insert(
                "media".into(),
                serde_json::to_value(media).unwrap_or_default(),
            );
        }
        if let Some(reply_to) = reply_to {
            content.insert("reply_to".into(), reply_to.to_string().into());
        }
        let job = SendJob {
            origin,
            id,
            conv,
            content: content.into(),
            received,
        };
        self.to_shard(Job::Send(job));
    }

    fn block(&self, origin: Origin, other: String, on: bool) {
        let services = self.services.clone();
        tokio::task::spawn_blocking(move || social::block(&services, &origin, &other, on));
    }

    fn group_job(&self, origin: Origin, group: String, op: GroupOp) {
        self.to_shard(Job::Group(GroupJob {
            origin,
            group,
            op,
            reply: None,
        }));
    }

    /// Queues `user`'s leaving `group` with its outcome sent to `reply` (for a
    /// [`crate::BridgeHandle`]).
    pub(crate) fn leave_for(&self, user: &str, group: &str, reply: GroupReply) {
        let origin = Origin {
            user: user.to_owned(),
            device: None,
            req: None,
        };
        self.to_shard(Job::Group(GroupJob {
            origin,
            group: group.to_owned(),
            op: GroupOp::Leave,
            reply: Some(reply),
        }));
    }

    fn to_shard(&self, job: Job) {
        let shard = self.store().conv_shard(&job.conv()) % self.shards.len();
        // Counted before it is queued, so the worker never takes the gauge below zero.
        let depth = self.services.stats.shard_queue(shard);
        if let Some(d) = depth {
            d.inc();
        }
        if self.shards[shard].send(job).is_err() {
            if let Some(d) = depth {
                d.dec();
            }
            warn!(shard, "shard worker stopped; request dropped");
        }
    }
}

/// `n` in base 36 (`[0-9a-z]`), for group ids.
fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// `/tenants/{user}/{kind}` -> (user, kind).
fn split_topic(topic: &[u8]) -> Option<(&str, &str)> {
    let topic = std::str::from_utf8(topic).ok()?;
    let rest = topic.strip_prefix("/tenants/")?;
    let (user, kind) = rest.split_once('/')?;
    chat_proto::valid_id(user).then_some((user, kind))
}

/// Reads one partition's requests until the link closes.
pub(crate) async fn run(mut link: LinkRx, dispatch: Arc<Dispatch>) {
    loop {
        match link.next().await {
            Ok(Some(Notification::Forward(forward))) => {
                dispatch.on_publish(&forward.publish.topic, &forward.publish.payload);
            }
            Ok(Some(Notification::Unschedule)) => {
                if link.wake().await.is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, "bridge link closed");
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{base36, split_topic};

    #[test]
    fn group_ids_are_base36() {
        assert_eq!(base36(0), "0");
        assert_eq!(base36(35), "z");
        assert_eq!(base36(36), "10");
        let id = base36(u64::MAX);
        assert_eq!(id, "3w5e11264sgsf");
        assert!(chat_proto::valid_id(&id));
    }

    #[test]
    fn topics_name_the_user() {
        assert_eq!(split_topic(b"/tenants/alice/out"), Some(("alice", "out")));
        assert_eq!(
            split_topic(b"/tenants/alice/status"),
            Some(("alice", "status"))
        );
        assert_eq!(split_topic(b"/tenants/Alice/out"), None);
        assert_eq!(split_topic(b"/other/alice/out"), None);
        assert_eq!(split_topic(b"/tenants/alice"), None);
    }
}
