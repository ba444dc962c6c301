//! One function per `chat` subcommand.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use chat_proto::{Conv, Event, ReceiptStatus, SendRequest, Target};
use tokio::time::Instant;

use super::print::Printer;
use super::{Cli, Command, GroupCommand};
use crate::{Api, Client, ConnState, Options, Session, StateStore};

const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";
const DEFAULT_MQTT: &str = "127.0.0.1:8883";

/// Runs one subcommand.
pub(super) async fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Ctx::new(&cli)?;
    match cli.command {
        Command::Register { user, password } => {
            let password = read_password(password.password)?;
            ctx.api(None)?.register(&user, &password).await?;
            println!("registered {user}; now run: chat login {user}");
        }
        Command::Login {
            user,
            device,
            password,
        } => login(&ctx, &user, device, password.password).await?,
        Command::Whoami => whoami(&ctx)?,
        Command::Send {
            group,
            file,
            reply_to,
            words,
        } => send(&ctx, group, file, reply_to, words).await?,
        Command::Listen {
            json,
            count,
            timeout,
            no_receipts,
        } => return listen(&ctx, json, count, timeout, !no_receipts).await,
        Command::Read { group, args } => read(&ctx, group, args).await?,
        Command::History {
            user,
            group,
            limit,
            before,
            json,
        } => history(&ctx, user, group, limit, before, json).await?,
        Command::Group(cmd) => group(&ctx, cmd).await?,
        Command::Upload { file, mime } => {
            let session = ctx.session()?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let mime = mime.unwrap_or_else(|| guess_mime(&file).to_owned());
            let media = ctx
                .api(Some(&session))?
                .upload(&session.token, bytes, &mime)
                .await?;
            println!("{}", serde_json::to_string(&media)?);
        }
        Command::Download { media_id, out } => {
            let session = ctx.session()?;
            let (bytes, mime) = ctx
                .api(Some(&session))?
                .download(&session.token, &media_id)
                .await?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &bytes)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "{} bytes of {mime} written to {}",
                        bytes.len(),
                        path.display()
                    );
                }
                None => std::io::stdout().write_all(&bytes)?,
            }
        }
        Command::Block { user } => {
            let client = ctx.connect().await?;
            let result = client.block(&user).await;
            client.close().await;
            result?;
            println!("blocked {user}");
        }
        Command::Unblock { user } => {
            let client = ctx.connect().await?;
            let result = client.unblock(&user).await;
            client.close().await;
            result?;
            println!("unblocked {user}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// What every subcommand needs from the global flags.
struct Ctx {
    server: Option<String>,
    mqtt: Option<String>,
    store: StateStore,
    state_path: PathBuf,
    http_ca: Option<String>,
    wait: Duration,
}

impl Ctx {
    fn new(cli: &Cli) -> Result<Ctx> {
        let state_path = match &cli.state {
            Some(path) => path.clone(),
            None => default_state_path()?,
        };
        let http_ca = match &cli.ca {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the CA file {}", path.display()))?,
            ),
            None => None,
        };
        Ok(Ctx {
            server: cli.server.clone(),
            mqtt: cli.mqtt.clone(),
            store: StateStore::File(state_path.clone()),
            state_path,
            http_ca,
            wait: Duration::from_secs(cli.wait.max(1)),
        })
    }

    /// The HTTP API: --server, else the session's, else the default.
    fn api(&self, session: Option<&Session>) -> Result<Api> {
        let base = self
            .server
            .clone()
            .or_else(|| session.map(|s| s.http.clone()))
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        Ok(Api::new(&base, self.http_ca.as_deref())?)
    }

    /// The saved session, with --server and --mqtt applied.
    fn session(&self) -> Result<Session> {
        let mut session = self.store.load()?.ok_or_else(|| {
            anyhow!(
                "not logged in (no state file at {}): run `chat login USER` first",
                self.state_path.display()
            )
        })?;
        if let Some(server) = &self.server {
            session.http = server.trim_end_matches('/').to_owned();
        }
        if let Some(mqtt) = &self.mqtt {
            session.mqtt = mqtt.clone();
        }
        Ok(session)
    }

    fn options(&self, catch_up: bool) -> Options {
        Options {
            http_ca_pem: self.http_ca.clone(),
            request_timeout: self.wait,
            catch_up,
            ..Options::default()
        }
    }

    /// Connects for a one-shot command and waits until online (at most --wait). It does not
    /// read the inbox: incoming events stay for `chat listen`.
    async fn connect(&self) -> Result<Client> {
        let (client, _events) = self.connect_with(false).await?;
        Ok(client)
    }

    /// Connects, catches up from the last inbox number, and waits until online.
    async fn connect_with_events(&self) -> Result<(Client, crate::Events)> {
        self.connect_with(true).await
    }

    async fn connect_with(&self, catch_up: bool) -> Result<(Client, crate::Events)> {
        let session = self.session()?;
        let mqtt = session.mqtt.clone();
        let (client, events) = Client::start(session, self.store.clone(), self.options(catch_up))?;
        if let Err(e) = client.wait_online(self.wait).await {
            client.close().await;
            return Err(anyhow!("{e} (broker {mqtt})"));
        }
        Ok((client, events))
    }
}

fn default_state_path() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("CHAT_HOME") {
        return Ok(PathBuf::from(home).join("state.json"));
    }
    match std::env::var_os("HOME") {
        Some(home) => Ok(PathBuf::from(home)
            .join(".config")
            .join("chat")
            .join("state.json")),
        None => bail!("no state file location: set CHAT_HOME or HOME, or pass --state FILE"),
    }
}

fn read_password(given: Option<String>) -> Result<String> {
    if let Some(p) = given {
        return Ok(p);
    }
    eprint!("password: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("no password given (use --password, $CHAT_PASSWORD or stdin)");
    }
    Ok(password)
}

async fn login(
    ctx: &Ctx,
    user: &str,
    device: Option<String>,
    password: Option<String>,
) -> Result<()> {
    let device = device.unwrap_or_else(|| {
        let suffix: String = (0..6)
            .map(|_| {
                let c = rand::random::<u8>() % 36;
                char::from(if c < 10 { b'0' + c } else { b'a' + c - 10 })
            })
            .collect();
        format!("cli{suffix}")
    });
    let password = read_password(password)?;
    let previous = ctx.store.load().ok().flatten();
    let api = ctx.api(previous.as_ref())?;
    let mqtt = ctx
        .mqtt
        .clone()
        .or_else(|| previous.as_ref().map(|s| s.mqtt.clone()))
        .unwrap_or_else(|| DEFAULT_MQTT.to_owned());
    crate::conn::split_host_port(&mqtt)?;
    let session = api.enrol(&mqtt, user, &password, &device).await?;
    ctx.store.save(&session)?;
    println!(
        "logged in as {user}, device {} (certificate valid until {}); state in {}",
        session.device,
        super::print::utc(session.cert_expires_at * 1000),
        ctx.state_path.display()
    );
    Ok(())
}

fn whoami(ctx: &Ctx) -> Result<()> {
    let s = ctx.session()?;
    println!("user      {}", s.user);
    println!("device    {}", s.device);
    println!("server    {}", s.http);
    println!("mqtt      {}", s.mqtt);
    println!(
        "cert      valid until {}",
        super::print::utc(s.cert_expires_at * 1000)
    );
    println!("inbox     read up to n = {}", s.last_n);
    println!("outbox    {} unsent message(s)", s.outbox.len());
    Ok(())
}

/// `USER` (or `--group G`), then the rest of the words as the text.
fn target_and_rest(
    group: Option<String>,
    mut words: Vec<String>,
    what: &str,
) -> Result<(Target, Vec<String>)> {
    match group {
        Some(g) => Ok((Target::Group(g), words)),
        None => {
            if words.is_empty() {
                bail!("{what}: name a user (or --group GROUP)");
            }
            let user = words.remove(0);
            Ok((Target::To(user), words))
        }
    }
}

async fn send(
    ctx: &Ctx,
    group: Option<String>,
    file: Option<PathBuf>,
    reply_to: Option<String>,
    words: Vec<String>,
) -> Result<()> {
    let (target, words) = target_and_rest(group, words, "send")?;
    let body = words.join(" ");
    if body.is_empty() && file.is_none() {
        bail!("send: nothing to send (give a text or --file FILE)");
    }
    let reply_to = match reply_to {
        Some(id) => Some(
            chat_proto::parse_msg_id(&id)
                .ok_or_else(|| anyhow!("--reply-to {id:?} is not a msg_id (a decimal number)"))?,
        ),
        None => None,
    };
    let client = ctx.connect().await?;
    let result = async {
        let media = match &file {
            Some(path) => {
                let bytes =
                    std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                Some(client.upload(bytes, guess_mime(path)).await?)
            }
            None => None,
        };
        let request = SendRequest {
            id: client.new_id(),
            target,
            body: (!body.is_empty()).then_some(body),
            media,
            reply_to,
        };
        match tokio::time::timeout(ctx.wait, client.send_request(request)).await {
            Ok(sent) => Ok(sent?),
            Err(_) => Err(anyhow!(
                "no `sent` from the server within {:?}; the message stays in the outbox and \
                 goes out with the next chat command",
                ctx.wait
            )),
        }
    }
    .await;
    client.close().await;
    let sent = result?;
    println!(
        "✓ sent {} #{} (msg_id {})",
        sent.conv, sent.seq, sent.msg_id
    );
    Ok(())
}

async fn listen(
    ctx: &Ctx,
    json: bool,
    count: Option<u64>,
    timeout: Option<u64>,
    receipts: bool,
) -> Result<ExitCode> {
    let (client, mut events) = ctx.connect_with_events().await?;
    let printer = Printer::new(client.user().to_owned(), json);
    eprintln!(
        "listening as {}/{} (Ctrl-C to stop)",
        client.user(),
        client.device()
    );
    let deadline = timeout.map(|s| Instant::now() + Duration::from_secs(s));
    let mut state = client.state();
    let mut got = 0u64;
    let code = loop {
        if count.is_some_and(|c| got >= c) {
            break ExitCode::SUCCESS;
        }
        let sleep = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { break ExitCode::FAILURE };
                if let Event::Msg(m) = &event {
                    got += 1;
                    if receipts {
                        let _ = client.receipt(m.conv.clone(), ReceiptStatus::Delivered, m.seq).await;
                    }
                }
                printer.event(&event);
            }
            changed = state.changed() => {
                if changed.is_err() {
                    break ExitCode::FAILURE;
                }
                let now = state.borrow_and_update().clone();
                if !json {
                    match now {
                        ConnState::Reconnecting { attempt, error } => eprintln!("connection lost ({error}); reconnecting (attempt {attempt})"),
                        ConnState::Online => eprintln!("online"),
                        _ => {}
                    }
                }
            }
            _ = sleep => {
                if count.is_some() {
                    eprintln!("chat: timed out: {got} of {} message(s) received", count.unwrap_or(0));
                    break ExitCode::FAILURE;
                }
                break ExitCode::SUCCESS;
            }
            _ = tokio::signal::ctrl_c() => break ExitCode::SUCCESS,
        }
    };
    client.close().await;
    Ok(code)
}

async fn read(ctx: &Ctx, group: Option<String>, args: Vec<String>) -> Result<()> {
    let (target, rest) = target_and_rest(group, args, "read")?;
    let [seq] = rest.as_slice() else {
        bail!("read: give the seq to mark read up to");
    };
    let seq: u64 = seq
        .parse()
        .map_err(|_| anyhow!("read: {seq:?} is not a seq (a positive number)"))?;
    let client = ctx.connect().await?;
    let conv = target
        .conv(client.user())
        .map_err(|e| anyhow!("read: {e}"))?;
    let result = client.receipt(conv.clone(), ReceiptStatus::Read, seq).await;
    client.close().await;
    result?;
    println!("marked {conv} read up to #{seq}");
    Ok(())
}

async fn history(
    ctx: &Ctx,
    user: Option<String>,
    group: Option<String>,
    limit: usize,
    before: Option<u64>,
    json: bool,
) -> Result<()> {
    let session = ctx.session()?;
    let conv = match (user, group) {
        (_, Some(g)) => Conv::group(&g),
        (Some(u), None) => Conv::direct(&session.user, &u),
        (None, None) => bail!("history: name a user or --group GROUP"),
    }
    .map_err(|e| anyhow!("history: {e}"))?;
    let page = ctx
        .api(Some(&session))?
        .history(&session.token, &conv, before, Some(limit))
        .await?;
    let printer = Printer::new(session.user.clone(), json);
    for m in page.messages.iter().rev() {
        printer.history_line(m);
    }
    if page.more && !json {
        let oldest = page.messages.last().map_or(0, |m| m.seq);
        eprintln!("(older messages: chat history ... --before {oldest})");
    }
    Ok(())
}

async fn group(ctx: &Ctx, cmd: GroupCommand) -> Result<()> {
    let client = ctx.connect().await?;
    let result = async {
        match cmd {
            GroupCommand::Create { name, members } => {
                let id = client.group_create(&name, members).await?;
                println!("{id}");
            }
            GroupCommand::Add { group, members } => {
                client.group_add(&group, members).await?;
                println!("added to {group}");
            }
            GroupCommand::Remove { group, members } => {
                client.group_remove(&group, members).await?;
                println!("removed from {group}");
            }
            GroupCommand::Leave { group } => {
                client.group_leave(&group).await?;
                println!("left {group}");
            }
            GroupCommand::Info { group } => {
                let info = client.group_info(&group).await?;
                println!("{} ({})", info.name, info.group);
                for m in info.members {
                    println!("  {} {}", m.user, m.role);
                }
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    client.close().await;
    result
}

/// A content type from a file's extension.
fn guess_mime(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("mp4") => "video/mp4",
        Some("mp3") => "audio/mpeg",
        Some("ogg") => "audio/ogg",
        Some("pdf") => "application/pdf",
        Some("txt") => "text/plain",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}
