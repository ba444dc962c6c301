//! [`Client`]: a connected device. A cheap handle to the connection task (`conn.rs`); every
//! method builds one request, hands it over, and awaits its answer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chat_proto::{
    Conv, Envelope, Event, GroupCreateRequest, GroupInfoAnswer, GroupMembersRequest, HistoryAnswer,
    HistoryRequest, Media, Platform, PushRegisterRequest, ReceiptRequest, ReceiptStatus, Request,
    SendRequest, SentEvent, SyncAnswer, SyncRequest, Target, TypingRequest, TypingState,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::api::{Api, HistoryPage};
use crate::conn::{Actor, Command};
use crate::error::{Error, Result};
use crate::state::{Session, StateStore};

/// Connection settings. [`Options::default`] suits an app; every field has a reason below.
#[derive(Debug, Clone)]
pub struct Options {
    /// MQTT keep-alive: a dead connection is noticed after about 1.5 times this. Default 30 s.
    pub keep_alive: Duration,
    /// TCP + TLS + CONNECT must finish within this. Default 10 s.
    pub connect_timeout: Duration,
    /// First reconnect delay (before jitter). Default 100 ms.
    pub backoff_min: Duration,
    /// Longest reconnect delay. Default 10 s.
    pub backoff_max: Duration,
    /// How long a request with an answer (`history`, `group_info`, `ok` ...) waits. Default 30 s.
    /// Sends have no timeout: they stay in the outbox until `sent`.
    pub request_timeout: Duration,
    /// A send without `sent` for this long on the same connection is published again (same
    /// id, so the server stores it once). Default 10 s.
    pub resend_after: Duration,
    /// How long an inbox gap (an event with `n` past the next expected one) may stay open
    /// before a `sync` fills it: events of different conversations can overtake each other.
    /// Default 300 ms.
    pub gap_wait: Duration,
    /// Events per `sync` page (the server clamps to 1000). Default 500.
    pub sync_limit: usize,
    /// The last `n` is saved at most this often (new outbox entries are saved at once).
    /// Default 200 ms.
    pub save_every: Duration,
    /// Catch up with `sync` on every connect and move the saved last `n` as stored events
    /// are delivered. Default true. A client that only sends (a one-shot command) turns it
    /// off: it then leaves the inbox for the next client that reads it, and its event stream
    /// carries only live events, unordered and not deduplicated.
    pub catch_up: bool,
    /// Publishes in flight without PUBACK. Default 100.
    pub inflight: u16,
    /// An extra trusted root (PEM) for an HTTPS API signed by the deployment's own CA.
    pub http_ca_pem: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            keep_alive: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            resend_after: Duration::from_secs(10),
            gap_wait: Duration::from_millis(300),
            sync_limit: 500,
            save_every: Duration::from_millis(200),
            catch_up: true,
            inflight: 100,
            http_ca_pem: None,
        }
    }
}

/// Where the connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnState {
    /// The first connection attempt is under way.
    Connecting,
    /// Connected and subscribed; catching up with `sync`.
    Syncing,
    /// Connected, subscribed and caught up: live events flow.
    Online,
    /// The connection failed or ended; the next attempt comes after a jittered delay.
    Reconnecting {
        /// Failed attempts in a row.
        attempt: u32,
        /// Why the last one failed.
        error: String,
    },
    /// [`Client::close`] was called.
    Closed,
}

/// The events a [`Client`] receives: every `msg`, `sent`, `receipt` and `group` once, in
/// inbox (`n`) order, plus `presence`, `typing` and `error` events that answer no request of
/// this client. Read it steadily: it is unbounded.
pub type Events = mpsc::UnboundedReceiver<Event>;

/// A device connected to a chat server. Clone it freely: clones share one connection.
///
/// The connection task ends when [`Client::close`] is called or every clone is dropped.
#[derive(Clone)]
pub struct Client {
    cmds: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<ConnState>,
    api: Api,
    user: Arc<str>,
    device: Arc<str>,
    token: Arc<str>,
    ids: Arc<IdMaker>,
}

/// Message and request ids: a random prefix per client, then a counter, so ids never repeat
/// across runs (the server keeps a message's `id` for at least 7 days).
struct IdMaker {
    prefix: String,
    next: AtomicU64,
}

impl IdMaker {
    fn next(&self) -> String {
        format!(
            "{}{:x}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

impl Client {
    /// Starts the connection task for the session in `store` (see [`StateStore::load`]).
    /// Fails if there is none.
    pub fn open(store: StateStore, options: Options) -> Result<(Client, Events)> {
        let session = store.load()?.ok_or_else(|| {
            Error::Invalid(match store.path() {
                Some(path) => format!("not logged in: no state file at {}", path.display()),
                None => "not logged in".into(),
            })
        })?;
        Client::start(session, store, options)
    }

    /// Starts the connection task for `session`, which is saved to `store` now and as it
    /// changes. The
    /// client connects at once and keeps reconnecting; watch [`Client::state`] or await
    /// [`Client::wait_online`]. Must be called inside a tokio runtime.
    pub fn start(
        session: Session,
        store: StateStore,
        options: Options,
    ) -> Result<(Client, Events)> {
        let api = Api::new(&session.http, options.http_ca_pem.as_deref())?;
        Client::start_with_api(session, store, options, api)
    }

    /// [`Client::start`] with an HTTP API client to share (its connection pool and TLS set-up),
    /// for programs that run many clients against one server, like `chat-bench`: building
    /// one costs milliseconds (it loads the trusted roots). `api` must be for `session.http`.
    pub fn start_with_api(
        session: Session,
        store: StateStore,
        options: Options,
        api: Api,
    ) -> Result<(Client, Events)> {
        crate::conn::split_host_port(&session.mqtt)?;
        // The state file exists and is current from the start (and an unwritable one is
        // reported now rather than at the first send).
        store.save(&session)?;
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(ConnState::Connecting);
        let client = Client {
            cmds: cmd_tx,
            state: state_rx,
            api: api.clone(),
            user: session.user.as_str().into(),
            device: session.device.as_str().into(),
            token: session.token.as_str().into(),
            ids: Arc::new(IdMaker {
                prefix: format!("{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff),
                next: AtomicU64::new(1),
            }),
        };
        let actor = Actor::new(session, store, options, api, cmd_rx, event_tx, state_tx);
        tokio::spawn(actor.run());
        Ok((client, event_rx))
    }

    /// The user id.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The device id.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// The HTTP API of the server, with this device's session token for [`Client::token`].
    pub fn api(&self) -> &Api {
        &self.api
    }

    /// The session token for the HTTP API.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The connection state, as it changes.
    pub fn state(&self) -> watch::Receiver<ConnState> {
        self.state.clone()
    }

    /// Waits until the client is connected, subscribed and caught up ([`ConnState::Online`]),
    /// at most `timeout`. On timeout the error names the last connection failure.
    pub async fn wait_online(&self, timeout: Duration) -> Result<()> {
        let mut state = self.state.clone();
        let waited = tokio::time::timeout(
            timeout,
            state.wait_for(|s| matches!(s, ConnState::Online | ConnState::Closed)),
        )
        .await;
        match waited {
            Ok(Ok(s)) if *s == ConnState::Online => Ok(()),
            Ok(_) => Err(Error::Closed),
            Err(_) => Err(match &*self.state.borrow() {
                ConnState::Reconnecting { error, .. } => Error::Unreachable(error.clone()),
                other => Error::Unreachable(format!("still {other:?} after {timeout:?}")),
            }),
        }
    }

    /// A new message id, unique across runs.
    pub fn new_id(&self) -> String {
        self.ids.next()
    }

    /// Sends a text message to a user or a group and returns its `sent` event: the message is
    /// then on the server's disk. Retried with the same id across reconnects and restarts of
    /// the client (the outbox), so it is stored once; it fails only when the server refuses
    /// it (`error` other than `unavailable`) or the client is closed.
    pub async fn send(&self, to: Target, body: &str) -> Result<SentEvent> {
        self.send_request(SendRequest {
            id: self.new_id(),
            target: to,
            body: Some(body.to_owned()),
            media: None,
            reply_to: None,
        })
        .await
    }

    /// Sends a complete `send` request (own id, media, `reply_to`); see [`Client::send`].
    pub async fn send_request(&self, request: SendRequest) -> Result<SentEvent> {
        if request.id.is_empty() || request.id.chars().count() > chat_proto::MAX_SEND_ID_LEN {
            return Err(Error::Invalid("a message id has 1 to 64 characters".into()));
        }
        if request.body.is_none() && request.media.is_none() {
            return Err(Error::Invalid("a message needs a body or media".into()));
        }
        check_target(&request.target)?;
        let id = request.id.clone();
        let envelope = Envelope {
            req: None,
            device: Some(self.device.to_string()),
            request: Request::Send(request),
        };
        let request = String::from_utf8(envelope.to_json())
            .map_err(|_| Error::Invalid("request is not UTF-8".into()))?;
        let (reply, answer) = oneshot::channel();
        self.command(Command::Send { id, request, reply })?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// Marks everything in `conv` up to `seq` as delivered or read. No answer is awaited: the
    /// server answers only with `receipt` events, and only when a watermark moved.
    pub async fn receipt(&self, conv: Conv, status: ReceiptStatus, seq: u64) -> Result<()> {
        self.tell(Request::Receipt(ReceiptRequest { conv, status, seq }))
            .await
    }

    /// A page of a conversation over MQTT, newest first: messages with `seq < before` (from
    /// the newest when `None`), at most `limit` (server default 50, at most 200).
    pub async fn history(
        &self,
        conv: Conv,
        before: Option<u64>,
        limit: Option<usize>,
    ) -> Result<HistoryAnswer> {
        let request = Request::History(HistoryRequest {
            conv,
            before,
            limit: limit.unwrap_or(chat_proto::HISTORY_DEFAULT_LIMIT),
        });
        match self.ask("history", request).await? {
            Event::History(answer) => Ok(answer),
            other => Err(unexpected("history", &other)),
        }
    }

    /// A page of this user's inbox as stored on the server: events with `n > after`, oldest
    /// first, at most `limit` (the server clamps to 1000). For reading the inbox again (an
    /// audit, a fresh view): the client's own catch-up does not need it, and this call neither
    /// moves the saved last `n` nor puts the events on the event stream.
    pub async fn sync(&self, after: u64, limit: usize) -> Result<SyncAnswer> {
        let request = Request::Sync(SyncRequest { after, limit });
        match self.ask("sync", request).await? {
            Event::Sync(answer) => Ok(answer),
            other => Err(unexpected("sync", &other)),
        }
    }

    /// The same page over HTTP (no MQTT round trip; works while disconnected).
    pub async fn history_http(
        &self,
        conv: &Conv,
        before: Option<u64>,
        limit: Option<usize>,
    ) -> Result<HistoryPage> {
        self.api.history(&self.token, conv, before, limit).await
    }

    /// Creates a group with `members` (besides this user, its admin); returns its id.
    pub async fn group_create(&self, name: &str, members: Vec<String>) -> Result<String> {
        check_ids(&members)?;
        let request = Request::GroupCreate(GroupCreateRequest {
            name: name.trim().to_owned(),
            members,
        });
        match self.ask("group_create", request).await? {
            Event::Ok(ok) => ok.group.ok_or_else(|| Error::BadAnswer {
                url: "group_create".into(),
                cause: "the ok answer names no group".into(),
            }),
            Event::Group(g) => Ok(g.group),
            other => Err(unexpected("group_create", &other)),
        }
    }

    /// Adds members to a group (admins only).
    pub async fn group_add(&self, group: &str, members: Vec<String>) -> Result<()> {
        check_ids(&members)?;
        let request = Request::GroupAdd(GroupMembersRequest {
            group: group.to_owned(),
            members,
        });
        self.ask_ok("group_add", request).await
    }

    /// Removes members from a group (admins only).
    pub async fn group_remove(&self, group: &str, members: Vec<String>) -> Result<()> {
        check_ids(&members)?;
        let request = Request::GroupRemove(GroupMembersRequest {
            group: group.to_owned(),
            members,
        });
        self.ask_ok("group_remove", request).await
    }

    /// Leaves a group.
    pub async fn group_leave(&self, group: &str) -> Result<()> {
        let request = Request::GroupLeave {
            group: group.to_owned(),
        };
        self.ask_ok("group_leave", request).await
    }

    /// A group's name and members.
    pub async fn group_info(&self, group: &str) -> Result<GroupInfoAnswer> {
        let request = Request::GroupInfo {
            group: group.to_owned(),
        };
        match self.ask("group_info", request).await? {
            Event::GroupInfo(info) => Ok(info),
            other => Err(unexpected("group_info", &other)),
        }
    }

    /// Asks for `presence` events about `users` (the current state, then changes). The
    /// events arrive on the event stream.
    pub async fn presence_sub(&self, users: Vec<String>) -> Result<()> {
        check_ids(&users)?;
        self.tell(Request::PresenceSub { users }).await
    }

    /// A typing indicator (not stored, not answered).
    pub async fn typing(&self, to: Target, state: TypingState) -> Result<()> {
        check_target(&to)?;
        self.tell(Request::Typing(TypingRequest { target: to, state }))
            .await
    }

    /// Stops delivery and pushes of `user`'s messages to this user.
    pub async fn block(&self, user: &str) -> Result<()> {
        check_ids(&[user.to_owned()])?;
        let request = Request::Block {
            user: user.to_owned(),
        };
        self.ask_ok("block", request).await
    }

    /// Undoes [`Client::block`].
    pub async fn unblock(&self, user: &str) -> Result<()> {
        check_ids(&[user.to_owned()])?;
        let request = Request::Unblock {
            user: user.to_owned(),
        };
        self.ask_ok("unblock", request).await
    }

    /// Registers this device for push notifications.
    pub async fn push_register(&self, platform: Platform, token: &str) -> Result<()> {
        let request = Request::PushRegister(PushRegisterRequest {
            platform,
            token: token.to_owned(),
        });
        self.ask_ok("push_register", request).await
    }

    /// Stops push notifications for this device.
    pub async fn push_unregister(&self) -> Result<()> {
        self.ask_ok("push_unregister", Request::PushUnregister)
            .await
    }

    /// Uploads a file over HTTP; attach the answer to a `send` as its `media`.
    pub async fn upload(&self, bytes: Vec<u8>, mime: &str) -> Result<Media> {
        self.api.upload(&self.token, bytes, mime).await
    }

    /// Downloads a file over HTTP: its bytes and content type.
    pub async fn download(&self, media_id: &str) -> Result<(Vec<u8>, String)> {
        self.api.download(&self.token, media_id).await
    }

    /// Disconnects cleanly (no Last Will), saves the session, and ends the connection task.
    /// Sends still waiting fail with [`Error::Closed`] but stay in the saved outbox.
    pub async fn close(&self) {
        let (reply, done) = oneshot::channel();
        if self.cmds.send(Command::Close { reply }).is_ok() {
            let _ = done.await;
        }
    }

    fn command(&self, cmd: Command) -> Result<()> {
        self.cmds.send(cmd).map_err(|_| Error::Closed)
    }

    fn envelope(&self, req: Option<String>, request: Request) -> Vec<u8> {
        Envelope {
            req,
            device: Some(self.device.to_string()),
            request,
        }
        .to_json()
    }

    async fn ask(&self, name: &'static str, request: Request) -> Result<Event> {
        let req = self.new_id();
        let payload = self.envelope(Some(req.clone()), request);
        let (reply, answer) = oneshot::channel();
        self.command(Command::Ask {
            req,
            name,
            payload,
            reply,
        })?;
        answer.await.map_err(|_| Error::Closed)?
    }

    async fn ask_ok(&self, name: &'static str, request: Request) -> Result<()> {
        match self.ask(name, request).await? {
            Event::Ok(_) => Ok(()),
            other => Err(unexpected(name, &other)),
        }
    }

    async fn tell(&self, request: Request) -> Result<()> {
        let payload = self.envelope(None, request);
        let (reply, answer) = oneshot::channel();
        self.command(Command::Tell { payload, reply })?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

fn unexpected(name: &str, event: &Event) -> Error {
    Error::BadAnswer {
        url: name.to_owned(),
        cause: format!(
            "unexpected answer {}",
            String::from_utf8_lossy(&event.to_json())
        ),
    }
}

fn check_ids(ids: &[String]) -> Result<()> {
    match ids.iter().find(|id| !chat_proto::valid_id(id)) {
        Some(bad) => Err(Error::Invalid(format!(
            "{bad:?} is not a valid id: 1-32 characters of a-z and 0-9"
        ))),
        None => Ok(()),
    }
}

fn check_target(target: &Target) -> Result<()> {
    match target {
        Target::To(user) | Target::Group(user) => check_ids(std::slice::from_ref(user)),
    }
}
