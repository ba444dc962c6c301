//! A minimal WebDriver (W3C) client for chromedriver and headless Chromium, enough to drive
//! the dashboard: open a page, find elements by CSS selector, type, click, read text, take a
//! screenshot. It speaks the protocol's JSON over HTTP with reqwest; nothing is downloaded.
//!
//! [`Browser::start`] runs `chromedriver` on a free loopback port in its own process group,
//! which is killed when the [`Browser`] is dropped (so a failing test leaves no Chromium).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Why the browser could not be used.
#[derive(Debug)]
pub enum BrowserError {
    /// `chromium` or `chromedriver` is not installed (the distribution's `chromium` and
    /// `chromium-driver` packages).
    Missing(String),
    /// Anything else: the driver failed, an element was not found, ...
    Failed(String),
}

impl std::fmt::Display for BrowserError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BrowserError::Missing(m) => write!(f, "not installed: {m}"),
            BrowserError::Failed(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for BrowserError {}

fn failed(e: impl std::fmt::Display) -> BrowserError {
    BrowserError::Failed(e.to_string())
}

/// The first of `names` found on `PATH`.
fn find_on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// A headless Chromium session driven through chromedriver.
pub struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT/session/ID`.
    session: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and the Chromium it started share a process group: end them all.
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session (window 1280x1600).
    pub async fn start() -> Result<Browser, BrowserError> {
        let chromium = find_on_path(&["chromium", "chromium-browser", "google-chrome"])
            .ok_or_else(|| BrowserError::Missing("chromium".into()))?;
        let driver_bin = find_on_path(&["chromedriver"])
            .ok_or_else(|| BrowserError::Missing("chromedriver".into()))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(failed)?
            .port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(failed)?;
        let profile = tempfile::tempdir().map_err(failed)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(failed)?;
        let base = format!("http://127.0.0.1:{port}");
        let mut browser = Browser {
            http,
            session: String::new(),
            driver,
            _profile: profile,
        };
        browser.wait_ready(&base).await?;
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.display().to_string(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--window-size=1280,1600",
                    format!("--user-data-dir={}", browser._profile.path().display()),
                ],
            },
        }}});
        let answer = browser
            .call(
                reqwest::Method::POST,
                &format!("{base}/session"),
                Some(caps),
            )
            .await?;
        let id = answer["sessionId"]
            .as_str()
            .ok_or_else(|| failed(format!("no session id in {answer}")))?;
        browser.session = format!("{base}/session/{id}");
        Ok(browser)
    }

    async fn wait_ready(&self, base: &str) -> Result<(), BrowserError> {
        for _ in 0..100 {
            if let Ok(r) = self.http.get(format!("{base}/status")).send().await {
                if let Ok(v) = r.json::<Value>().await {
                    if v["value"]["ready"] == json!(true) {
                        return Ok(());
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(failed("chromedriver did not become ready within 10 s"))
    }

    /// One WebDriver command; returns its `value`.
    async fn call(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Value, BrowserError> {
        let mut req = self.http.request(method.clone(), url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.map_err(failed)?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(failed)?;
        if !status.is_success() {
            return Err(failed(format!(
                "{method} {url}: {status}: {}",
                body["value"]["message"]
            )));
        }
        Ok(body["value"].clone())
    }

    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, BrowserError> {
        self.call(method, &format!("{}{path}", self.session), body)
            .await
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) -> Result<(), BrowserError> {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    async fn element(&self, css: &str) -> Result<String, BrowserError> {
        let found = self
            .command(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await?;
        found[ELEMENT]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| failed(format!("no element reference for {css}")))
    }

    /// Types `text` into the element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) -> Result<(), BrowserError> {
        let id = self.element(css).await?;
        let path = format!("/element/{id}/value");
        self.command(reqwest::Method::POST, &path, Some(json!({ "text": text })))
            .await
            .map(drop)
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) -> Result<(), BrowserError> {
        let id = self.element(css).await?;
        let path = format!("/element/{id}/click");
        self.command(reqwest::Method::POST, &path, Some(json!({})))
            .await
            .map(drop)
    }

    /// The rendered text of the element matching `css`.
    pub async fn text(&self, css: &str) -> Result<String, BrowserError> {
        let id = self.element(css).await?;
        let text = self
            .command(reqwest::Method::GET, &format!("/element/{id}/text"), None)
            .await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// Waits up to `wait` until the element matching `css` exists and its text satisfies
    /// `ok`; returns that text. (The page re-renders every second, so every try looks the
    /// element up afresh.)
    pub async fn wait_text(
        &self,
        css: &str,
        wait: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> Result<String, BrowserError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let last = match self.text(css).await {
                Ok(text) if ok(&text) => return Ok(text),
                Ok(text) => text,
                Err(e) => e.to_string(),
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(failed(format!(
                    "{css}: not as expected within {wait:?}; last: {last}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a PNG screenshot of the window to `path` (creating its directory).
    pub async fn screenshot(&self, path: &Path) -> Result<(), BrowserError> {
        let data = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .map_err(failed)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        std::fs::write(path, png).map_err(failed)
    }

    /// Ends the session (Chromium exits) and chromedriver.
    pub async fn close(mut self) {
        let _ = self
            .call(reqwest::Method::DELETE, &self.session, None)
            .await;
        let _ = self.driver.kill().await;
    }
}
