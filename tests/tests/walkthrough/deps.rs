//! Private PostgreSQL, NATS (JetStream) and Redis on free ports in a temporary
//! directory, started as `tests/chaos/stack.py` starts them: the walkthrough never
//! touches the machine's own servers, and each server stops when it is dropped.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};

/// How long a server may take to start, or to stop before it is killed.
const PATIENCE: Duration = Duration::from_secs(60);

/// A port on 127.0.0.1 that nothing listens on (the OS picks it).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Whether something accepts connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).is_ok()
}

/// Sends `signal` (`INT`, `TERM`, `KILL`...) to the process group `pgid`, as a
/// terminal's Ctrl-C reaches every process of the foreground job.
pub fn signal_group(pgid: u32, signal: &str) -> anyhow::Result<()> {
    kill(signal, &format!("-{pgid}"))
}

/// Sends `signal` to one process.
fn signal_process(pid: u32, signal: &str) -> anyhow::Result<()> {
    kill(signal, &pid.to_string())
}

/// bash's `kill` (run.sh needs bash anyway; a `kill` program may not be installed).
fn kill(signal: &str, target: &str) -> anyhow::Result<()> {
    let status = Command::new("bash")
        .args(["-c", "kill -s \"$1\" -- \"$2\"", "kill", signal, target])
        .stderr(Stdio::null())
        .status()
        .context("running bash's kill")?;
    anyhow::ensure!(status.success(), "kill -s {signal} -- {target} failed (is it gone?)");
    Ok(())
}

/// The last `n` lines of the file at `path` ("" when it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    let Ok(file) = File::open(path) else { return String::new() };
    let lines: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A server this test started, in a process group of its own, logging to a file.
/// Dropping it stops it (`stop_signal`, then `SIGKILL` to its group after a minute).
struct Server {
    name: &'static str,
    child: Child,
    log: PathBuf,
    stop_signal: &'static str,
}

impl Server {
    fn start(name: &'static str, mut cmd: Command, log: &Path, stop_signal: &'static str) -> anyhow::Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).process_group(0);
        let child = cmd.spawn().with_context(|| format!("starting {name} ({cmd:?})"))?;
        Ok(Self { name, child, log: log.to_owned(), stop_signal })
    }

    /// Waits until `ready` holds; an exit meanwhile fails at once, with the log.
    fn wait_ready(&mut self, ready: impl Fn() -> bool) -> anyhow::Result<()> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited while starting ({status}):\n{}", self.name, tail(&self.log, 30));
            }
            if ready() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} was not ready within {PATIENCE:?}:\n{}", self.name, tail(&self.log, 30));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs the process to its end (`initdb`); fails with its log unless it succeeds.
    fn finish(mut self) -> anyhow::Result<()> {
        let status = self.child.wait()?;
        anyhow::ensure!(status.success(), "{} failed ({status}):\n{}", self.name, tail(&self.log, 30));
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        let pid = self.child.id();
        let _ = signal_process(pid, self.stop_signal);
        let deadline = Instant::now() + PATIENCE;
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = signal_group(pid, "KILL");
        }
        let _ = self.child.wait();
    }
}

/// The three servers the services need, private to one test.
pub struct Deps {
    pub database_url: String,
    pub nats_url: String,
    pub redis_url: String,
    // Stopped in this order when dropped (fields drop in declaration order).
    _redis: Server,
    _nats: Server,
    _postgres: Server,
}

impl Deps {
    /// Starts them under `dir` (which must exist). Blocks until each accepts
    /// connections; PostgreSQL may still be finishing its start-up then.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        let logs = dir.join("deps-logs");
        std::fs::create_dir_all(&logs)?;
        let postgres = start_postgres(dir, &logs)?;
        let (nats_port, redis_port) = (free_port()?, free_port()?);

        let mut nats = Command::new("nats-server");
        nats.args(["-a", "127.0.0.1", "-p", &nats_port.to_string(), "-js", "-sd"]).arg(dir.join("nats"));
        let mut nats = Server::start("nats-server", nats, &logs.join("nats.log"), "TERM")?;
        nats.wait_ready(|| port_open(nats_port))?;

        let redis_dir = dir.join("redis");
        std::fs::create_dir_all(&redis_dir)?;
        let mut redis = Command::new("redis-server");
        redis.args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]);
        redis.arg("--dir").arg(&redis_dir);
        let mut redis = Server::start("redis-server", redis, &logs.join("redis.log"), "TERM")?;
        redis.wait_ready(|| port_open(redis_port))?;

        Ok(Self {
            database_url: format!("postgres://postgres@127.0.0.1:{}/chat", postgres.1),
            nats_url: format!("nats://127.0.0.1:{nats_port}"),
            redis_url: format!("redis://127.0.0.1:{redis_port}"),
            _redis: redis,
            _nats: nats,
            _postgres: postgres.0,
        })
    }
}

/// A fresh cluster (`initdb`, trust authentication for `postgres`) and its server,
/// with its port. PostgreSQL refuses to run as root: then both run as `postgres`.
fn start_postgres(dir: &Path, logs: &Path) -> anyhow::Result<(Server, u16)> {
    let bin = pg_bin()?;
    let pg_dir = dir.join("pg");
    std::fs::create_dir_all(&pg_dir)?;
    let owner = if std::fs::metadata("/proc/self")?.uid() == 0 {
        let (uid, gid) = account("postgres")?;
        // The server user must reach its directory through ours.
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        std::os::unix::fs::chown(&pg_dir, Some(uid), Some(gid))?;
        Some((uid, gid))
    } else {
        None
    };
    let as_owner = |program: &str| {
        let mut cmd = Command::new(bin.join(program));
        if let Some((uid, gid)) = owner {
            cmd.uid(uid).gid(gid);
        }
        cmd
    };
    let data = pg_dir.join("data");
    let mut initdb = as_owner("initdb");
    initdb.arg("-D").arg(&data).args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]);
    Server::start("initdb", initdb, &logs.join("initdb.log"), "TERM")?.finish()?;

    let port = free_port()?;
    let mut postgres = as_owner("postgres");
    postgres.arg("-D").arg(&data).args(["-p", &port.to_string()]).arg("-k").arg(&pg_dir);
    postgres.args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "shared_buffers=32MB"]);
    // SIGINT: PostgreSQL's fast shutdown.
    let mut server = Server::start("postgres", postgres, &logs.join("postgres.log"), "INT")?;
    server.wait_ready(|| port_open(port))?;
    Ok((server, port))
}

/// Where PostgreSQL's server programs are: `PG_BIN`, else the newest
/// `/usr/lib/postgresql/<version>/bin` (Debian), else the directory of `initdb` on `PATH`.
fn pg_bin() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Ok(dir.into());
    }
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .max_by_key(|(version, _)| *version);
    if let Some((_, bin)) = newest {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .find(|dir| dir.join("initdb").exists())
        .ok_or_else(|| anyhow!("PostgreSQL's initdb not found: apt-get install postgresql, or set PG_BIN"))
}

/// The uid and gid of `user`, from `/etc/passwd`.
fn account(user: &str) -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd")?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&user))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .ok_or_else(|| anyhow!("no user {user} in /etc/passwd: PostgreSQL does not run as root"))
}
