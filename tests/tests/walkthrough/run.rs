//! `scripts/run.sh` (what `make run` runs) as a child of the test: its output read
//! line by line as a terminal would show it, its banner parsed for what a newcomer
//! copies from it, and Ctrl-C as a terminal sends it (SIGINT to its process group).

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead as _, BufReader, Read};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use tokio::sync::mpsc;

use crate::deps::{Deps, free_port, signal_group};

/// How long run.sh may take to print its banner (each service has READY_TIMEOUT, 90 s).
const BANNER_WITHIN: Duration = Duration::from_secs(300);
/// How long run.sh may take to stop after Ctrl-C (it allows each service 10 s).
const STOP_WITHIN: Duration = Duration::from_secs(60);
/// How many of its last lines are kept for a failure's report.
const KEPT_LINES: usize = 200;

/// The services run.sh starts, by the variable that sets where each listens.
const ADDRESSES: [(&str, &str); 4] = [
    ("gateway", "GATEWAY_ADDR"),
    ("message-store", "MESSAGE_STORE_OPS_ADDR"),
    ("presence", "PRESENCE_OPS_ADDR"),
    ("notification", "NOTIFICATION_OPS_ADDR"),
];

/// Variables of a developer's shell that would change what run.sh does here.
const CLEARED: &[&str] = &[
    "CHAT_ADMIN_API_KEY",
    "CHAT_DEV_API_KEY",
    "CHAT_DEV_TENANT",
    "CHAT_BUS_PREFIX",
    "GATEWAY_STATIC_DIR",
    "GATEWAY_ATTACHMENTS",
    "GATEWAY_LINK_KEY",
    "GATEWAY_DEV_LOGIN",
    "GATEWAY_DEV_TENANT",
    "RESTART",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// What the banner tells a newcomer.
#[derive(Debug)]
pub struct Banner {
    /// The `web chat` URL.
    pub web_chat: String,
    /// The `admin` (console) URL.
    pub admin: String,
    /// The `API docs` URL.
    pub docs: String,
    /// The `admin key`.
    pub admin_key: String,
}

/// A running `scripts/run.sh`; stopped (SIGTERM, then SIGKILL to its group) if it is
/// still running when dropped.
pub struct Run {
    child: Child,
    /// run.sh's lines (stdout and stderr), as they come, until the banner is read.
    lines: Option<mpsc::UnboundedReceiver<String>>,
    /// Its last lines, for a failure's report.
    kept: Arc<Mutex<VecDeque<String>>>,
    /// The port of each service, by name.
    pub ports: HashMap<&'static str, u16>,
}

impl Run {
    /// Starts `scripts/run.sh` with the debug binaries already built (`PROFILE=dev`,
    /// `SKIP_BUILD=1`), the private `deps` (`SKIP_DEPS=1`), every service on a free
    /// port and its own `CHAT_DEV_DIR` under `dir`, so that it never meets a
    /// developer's `make run` on :8000.
    pub fn start(root: &Path, dir: &Path, deps: &Deps) -> anyhow::Result<Self> {
        let mut cmd = Command::new(root.join("scripts/run.sh"));
        for name in CLEARED {
            cmd.env_remove(name);
        }
        let mut ports = HashMap::new();
        for (service, var) in ADDRESSES {
            let port = free_port()?;
            ports.insert(service, port);
            cmd.env(var, format!("127.0.0.1:{port}"));
        }
        cmd.env("PROFILE", "dev")
            .env("SKIP_BUILD", "1")
            .env("SKIP_DEPS", "1")
            .env("CHAT_DEV_DIR", dir.join("dev"))
            .env("DATABASE_URL", &deps.database_url)
            .env("NATS_URL", &deps.nats_url)
            .env("REDIS_URL", &deps.redis_url)
            .env("RUST_LOG", "info")
            .current_dir(root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, as a terminal's foreground job is.
            .process_group(0);
        let mut child = cmd.spawn().context("starting scripts/run.sh")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let kept = Arc::new(Mutex::new(VecDeque::new()));
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        read_lines(stdout, tx.clone(), kept.clone());
        read_lines(stderr, tx, kept.clone());
        Ok(Self { child, lines: Some(rx), kept, ports })
    }

    /// Reads run.sh's output up to the end of its banner and returns what it says.
    pub async fn banner(&mut self) -> anyhow::Result<Banner> {
        let mut lines = self.lines.take().ok_or_else(|| anyhow!("the banner was read already"))?;
        let (mut web_chat, mut admin, mut docs, mut admin_key) = (None, None, None, None);
        let mut in_banner = false;
        let read = async {
            while let Some(line) = lines.recv().await {
                in_banner |= line.contains("chat backend is running");
                if !in_banner {
                    continue;
                }
                match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                    ["web", "chat", url, ..] => web_chat = Some(url.to_string()),
                    ["admin", url, ..] if url.starts_with("http") => admin = Some(url.to_string()),
                    ["API", "docs", url, ..] => docs = Some(url.to_string()),
                    ["admin", "key", key, ..] => admin_key = Some(key.to_string()),
                    _ => {}
                }
                if let (Some(web_chat), Some(admin), Some(docs), Some(admin_key)) =
                    (&web_chat, &admin, &docs, &admin_key)
                {
                    return Ok(Banner {
                        web_chat: web_chat.clone(),
                        admin: admin.clone(),
                        docs: docs.clone(),
                        admin_key: admin_key.clone(),
                    });
                }
            }
            bail!("run.sh ended before its banner was complete ({:?})", self.child.try_wait())
        };
        // Later lines are kept for the report only (the readers go on draining the pipes).
        tokio::time::timeout(BANNER_WITHIN, read).await.map_err(|_| anyhow!("no banner within {BANNER_WITHIN:?}"))?
    }

    /// Ctrl-C: SIGINT to run.sh's process group; returns how run.sh exited.
    pub async fn interrupt(&mut self) -> anyhow::Result<ExitStatus> {
        signal_group(self.child.id(), "INT")?;
        let deadline = tokio::time::Instant::now() + STOP_WITHIN;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if tokio::time::Instant::now() > deadline {
                // Who is still there, for the report.
                let ps = std::process::Command::new("ps")
                    .args(["-o", "pid,ppid,stat,etime,wchan:20,cmd", "-g", &self.child.id().to_string()])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                bail!("run.sh still running {STOP_WITHIN:?} after Ctrl-C; its process group:\n{ps}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether run.sh has printed `line` (one of its last lines).
    pub async fn printed(&self, line: &str) -> bool {
        // The readers may be a moment behind the exit.
        for _ in 0..50 {
            if self.kept.lock().is_ok_and(|k| k.iter().any(|l| l == line)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Its last lines, for a failure's report.
    pub fn last_lines(&self) -> String {
        self.kept.lock().map(|k| k.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let pid = self.child.id();
        let _ = signal_group(pid, "TERM");
        for _ in 0..300 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = signal_group(pid, "KILL");
        let _ = self.child.wait();
    }
}

/// Reads `pipe` line by line on a thread of its own until it closes: every line is
/// kept (the last [`KEPT_LINES`]) and sent on while anyone listens. The pipe is read
/// to its end either way, so run.sh never blocks on a full one.
fn read_lines(pipe: impl Read + Send + 'static, tx: mpsc::UnboundedSender<String>, kept: Arc<Mutex<VecDeque<String>>>) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut raw = Vec::new();
        // Bytes, not `lines()`: a log line that is not UTF-8 must not stop the reading.
        while reader.read_until(b'\n', &mut raw).is_ok_and(|n| n > 0) {
            let line = String::from_utf8_lossy(&raw).trim_end_matches(['\n', '\r']).to_owned();
            raw.clear();
            if let Ok(mut kept) = kept.lock() {
                if kept.len() == KEPT_LINES {
                    kept.pop_front();
                }
                kept.push_back(line.clone());
            }
            let _ = tx.send(line);
        }
    });
}
