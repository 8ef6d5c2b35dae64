//! A headless Chromium driven over the DevTools protocol, for tests of pages served by
//! the gateway (the `ws-rooms.md` demo page, run as a browser runs it).
//!
//! A tiny CDP client on the workspace's own `tokio-tungstenite`: one WebSocket to the
//! browser, pages attached in flat mode (commands carry a `sessionId`), replies matched
//! by id. Pages are driven through the DOM with `Runtime.evaluate` only (`value`,
//! `dispatchEvent`, `click()`): CDP mouse input crashes some headless builds.
//!
//! Chromium is Debian's `chromium` (`/usr/bin/chromium`, which `make test` installs
//! through `scripts/ensure-deps.sh browser`), or whatever `CHROMIUM` names.

use std::collections::HashMap;
use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use crate::bounded;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Replies awaited, by command id.
type Waiting = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// The URLs each page (by session id) asked for since it enabled the `Network` domain.
type Requests = Arc<Mutex<HashMap<String, Vec<String>>>>;

/// The DevTools connection shared by the browser and its pages.
struct Conn {
    sink: tokio::sync::Mutex<SplitSink<Socket, Message>>,
    waiting: Waiting,
    requests: Requests,
    next: AtomicU64,
    reader: tokio::task::JoinHandle<()>,
}

impl Conn {
    /// Sends a command (to a page when `session` is given) and returns its `result`.
    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().map_err(|_| anyhow!("poisoned"))?.insert(id, tx);
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.sink.lock().await.send(Message::text(msg.to_string())).await?;
        let reply = bounded(method, rx).await?.map_err(|_| anyhow!("the browser went away during {method}"))?;
        if let Some(e) = reply.get("error") {
            bail!("{method} failed: {e}");
        }
        Ok(reply["result"].clone())
    }
}

/// A running headless Chromium with a fresh profile; killed (and its profile removed)
/// when dropped.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    conn: Arc<Conn>,
}

/// One page (tab) of a [`Browser`].
pub struct Page {
    conn: Arc<Conn>,
    session: String,
}

/// The Chromium binary: `CHROMIUM`, else `/usr/bin/chromium`, else `chromium` on the path.
fn chromium() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Ok(path.into());
    }
    let default = PathBuf::from("/usr/bin/chromium");
    if default.exists() {
        return Ok(default);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("chromium"))
        .find(|p| p.exists())
        .ok_or_else(|| {
            anyhow!(
                "Chromium not found: run `scripts/ensure-deps.sh browser` (apt-get install chromium) or set CHROMIUM"
            )
        })
}

impl Browser {
    /// Starts Chromium and connects to its DevTools endpoint.
    pub async fn launch() -> anyhow::Result<Self> {
        let binary = chromium()?;
        let profile = std::env::temp_dir().join(crate::unique("chromium-profile-"));
        std::fs::create_dir_all(&profile)?;
        let mut child = Command::new(&binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
                "--disable-background-timer-throttling",
                "--disable-backgrounding-occluded-windows",
                "--disable-renderer-backgrounding",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--no-default-browser-check",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        // Chromium prints its endpoint on stderr; keep draining stderr afterwards so a
        // chatty browser never blocks on a full pipe.
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let (url_tx, url_rx) = oneshot::channel::<String>();
        std::thread::spawn(move || {
            let mut url_tx = Some(url_tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.split("DevTools listening on ").nth(1)
                    && let Some(tx) = url_tx.take()
                {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = match tokio::time::timeout(Duration::from_secs(30), url_rx).await {
            Ok(Ok(url)) => url,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&profile);
                bail!("{} did not print its DevTools endpoint within 30 s", binary.display());
            }
        };
        let (socket, _) = bounded("connecting to DevTools", tokio_tungstenite::connect_async(url.as_str())).await??;
        let (sink, mut stream) = socket.split();
        let waiting: Waiting = Arc::default();
        let requests: Requests = Arc::default();
        let (replies, asked) = (waiting.clone(), requests.clone());
        let reader = tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                let Message::Text(text) = msg else { continue };
                let Ok(v) = serde_json::from_str::<Value>(&text) else { continue };
                // Replies have an id; of the events (method + params) only the requests
                // pages make are kept.
                if let Some(id) = v.get("id").and_then(Value::as_u64)
                    && let Some(tx) = replies.lock().ok().and_then(|mut w| w.remove(&id))
                {
                    let _ = tx.send(v);
                } else if v["method"] == "Network.requestWillBeSent"
                    && let (Some(session), Some(url)) =
                        (v["sessionId"].as_str(), v["params"]["request"]["url"].as_str())
                    && let Ok(mut asked) = asked.lock()
                {
                    asked.entry(session.to_owned()).or_default().push(url.to_owned());
                }
            }
        });
        let conn =
            Arc::new(Conn { sink: tokio::sync::Mutex::new(sink), waiting, requests, next: AtomicU64::new(1), reader });
        Ok(Self { child, profile, conn })
    }

    /// Sends a browser-wide DevTools command (`Browser.setDownloadBehavior`, ...) and
    /// returns its `result`.
    pub async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.conn.call(None, method, params).await
    }

    /// Opens `url` in a new page.
    pub async fn page(&self, url: &str) -> anyhow::Result<Page> {
        let target = self.conn.call(None, "Target.createTarget", json!({"url": url})).await?;
        let target_id = target["targetId"].as_str().ok_or_else(|| anyhow!("no targetId in {target}"))?;
        let attached =
            self.conn.call(None, "Target.attachToTarget", json!({"targetId": target_id, "flatten": true})).await?;
        let session = attached["sessionId"].as_str().ok_or_else(|| anyhow!("no sessionId in {attached}"))?;
        Ok(Page { conn: self.conn.clone(), session: session.to_owned() })
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.conn.reader.abort();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Page {
    /// Evaluates a JavaScript expression in the page (awaiting a promise it returns)
    /// and returns its value; a thrown exception is an error.
    pub async fn eval(&self, expression: &str) -> anyhow::Result<Value> {
        let params = json!({"expression": expression, "returnByValue": true, "awaitPromise": true});
        let result = self.conn.call(Some(&self.session), "Runtime.evaluate", params).await?;
        if let Some(e) = result.get("exceptionDetails") {
            bail!("{expression} threw: {e}");
        }
        Ok(result["result"].get("value").cloned().unwrap_or(Value::Null))
    }

    /// Sends any DevTools command to this page (`Network.emulateNetworkConditions`,
    /// `Page.captureScreenshot`, ...) and returns its `result`.
    pub async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.conn.call(Some(&self.session), method, params).await
    }

    /// Starts noting every request the page makes (the `Network` domain); see
    /// [`Page::requests`]. Open the page at `about:blank`, call this, then
    /// [`Page::navigate`] to see the requests of its first load too.
    pub async fn record_requests(&self) -> anyhow::Result<()> {
        self.call("Network.enable", json!({})).await?;
        Ok(())
    }

    /// The URLs the page asked for since [`Page::record_requests`] (or since anything
    /// else enabled the `Network` domain on it).
    pub fn requests(&self) -> Vec<String> {
        self.conn.requests.lock().ok().and_then(|r| r.get(&self.session).cloned()).unwrap_or_default()
    }

    /// Loads `url` in this page (without waiting for it: wait for what it should show).
    pub async fn navigate(&self, url: &str) -> anyhow::Result<()> {
        let nav = self.call("Page.navigate", json!({"url": url})).await?;
        if let Some(e) = nav.get("errorText").and_then(Value::as_str) {
            bail!("loading {url} failed: {e}");
        }
        Ok(())
    }

    /// Sets the value of the input (or select) with id `id` as typing does: an `input`
    /// event follows.
    pub async fn fill(&self, id: &str, value: &str) -> anyhow::Result<()> {
        self.wait_for(&format!("#{id} to be there"), &format!("!!document.getElementById({})", js(id))).await?;
        self.eval(&format!(
            "(() => {{ const i = document.getElementById({}); i.value = {}; i.dispatchEvent(new Event('input')); return true; }})()",
            js(id),
            js(value)
        ))
        .await?;
        Ok(())
    }

    /// Clicks the element `selector` matches once it is there (DOM `click()`: CDP
    /// mouse input crashes some headless builds).
    pub async fn click(&self, selector: &str) -> anyhow::Result<()> {
        self.wait_for(&format!("{selector} to be there"), &format!("!!document.querySelector({})", js(selector)))
            .await?;
        self.eval(&format!("document.querySelector({}).click(); true", js(selector))).await?;
        Ok(())
    }

    /// Waits (bounded, like [`crate::eventually`]) until `expression` is truthy in the
    /// page, and returns its value.
    pub async fn wait_for(&self, what: &str, expression: &str) -> anyhow::Result<Value> {
        let mut last = Value::Null;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            // The page may still be loading: an error is a "not yet".
            if let Ok(v) = self.eval(expression).await {
                let truthy = !matches!(&v, Value::Null | Value::Bool(false)) && v != json!("") && v != json!(0);
                if truthy {
                    return Ok(v);
                }
                last = v;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{what} did not happen within 30 s (last value: {last})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `s` as a JavaScript string literal.
pub fn js(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// An expression: the text of the element `selector` matches ("" when there is none).
pub fn text_of(selector: &str) -> String {
    format!("(document.querySelector({})?.textContent ?? '')", js(selector))
}

/// Waits until the web app in `page` shows its socket open (`who` names the page in
/// the error).
pub async fn online(page: &Page, who: &str) -> anyhow::Result<()> {
    page.wait_for(
        &format!("{who}'s socket to open"),
        "document.getElementById('conn-status').dataset.state === 'online'",
    )
    .await?;
    Ok(())
}

/// An expression: how many messages the web app shows that read exactly `content`.
pub fn count_of(content: &str) -> String {
    format!(
        "[...document.querySelectorAll('#message-list .msg .content')].filter(c => c.textContent === {}).length",
        js(content)
    )
}
