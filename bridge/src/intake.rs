//! Reading device requests from a router partition and dispatching them.

use std::sync::mpsc::Sender;
use std::sync::Arc;

use chat_broker::{LinkRx, Notification};
use chat_proto::{parse_request, parse_status, Conv, ErrorCode, Request, Status, Target};
use chat_store::Store;
use tracing::{debug, warn};

use crate::presence::store_last_seen;
use crate::reads;
use crate::worker::{Job, Origin, ReceiptJob, SendJob};
use crate::Services;

/// Routes parsed requests to workers and readers.
pub(crate) struct Dispatch {
    services: Arc<Services>,
    shards: Vec<Sender<Job>>,
}

impl Dispatch {
    pub(crate) fn new(services: Arc<Services>, shards: Vec<Sender<Job>>) -> Dispatch {
        Dispatch { services, shards }
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
    /// wait in the inbox for `sync`), and the user's last-seen is stored when no device is left.
    fn on_status(&self, user: &str, status: &Status) {
        let (device, present) = match status {
            Status::Online { device } => (device, true),
            Status::Offline { device } => (device, false),
        };
        if self.services.presence.status(user, device, present) {
            tokio::spawn(store_last_seen(self.store().clone(), user.to_owned()));
        }
    }

    fn on_request(&self, user: &str, payload: &[u8]) {
        let env = match parse_request(payload) {
            Ok(env) => env,
            Err(e) => {
                let origin = Origin {
                    user: user.to_owned(),
                    device: e.device.clone(),
                    req: e.req.clone(),
                };
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
        match env.request {
            Request::Send(send) => {
                let chat_proto::SendRequest {
                    id,
                    target,
                    body,
                    media,
                    reply_to,
                } = send;
                let to = match target {
                    Target::To(to) => to,
                    Target::Group(_) => {
                        return self.services.error(
                            &origin,
                            Some(&id),
                            ErrorCode::BadRequest,
                            "group messages are not supported by this server yet",
                        );
                    }
                };
                let conv = match Conv::direct(user, &to) {
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
                content.insert("to".into(), to.clone().into());
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
                    to,
                    content: content.into(),
                };
                self.to_shard(Job::Send(job));
            }
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
            other => {
                let message = format!("{} is not supported by this server yet", other.name());
                self.services
                    .error(&origin, None, ErrorCode::BadRequest, &message);
            }
        }
    }

    fn to_shard(&self, job: Job) {
        let conv = match &job {
            Job::Send(j) => j.conv.to_string(),
            Job::Receipt(j) => j.conv.to_string(),
        };
        let shard = self.store().conv_shard(&conv);
        if self.shards[shard % self.shards.len()].send(job).is_err() {
            warn!(shard, "shard worker stopped; request dropped");
        }
    }
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
    use super::split_topic;

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
