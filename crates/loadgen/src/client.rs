//! Talking to the stack as a client does: a benchmark tenant made with the admin key
//! (so the default rate limit does not cap the figures), rooms, messages, sockets
//! opened from chosen source addresses.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket connection.
pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Where the stack is and a tenant to use.
#[derive(Clone)]
pub struct Stack {
    pub url: String,
    pub ws_url: String,
    pub api_key: String,
    pub http: reqwest::Client,
}

impl Stack {
    /// Creates a benchmark tenant with a limit high enough not to matter.
    pub async fn new(url: &str, admin_key: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder().pool_max_idle_per_host(1024).timeout(Duration::from_secs(30)).build()?;
        let name = format!("bench-{}", chrono::Utc::now().format("%Y%m%d%H%M%S%3f"));
        let res = http
            .post(format!("{url}/admin/tenants"))
            .header("X-API-Key", admin_key)
            .json(&json!({"name": name, "rate_limit_per_sec": 1_000_000}))
            .send()
            .await
            .context("creating the benchmark tenant (is the stack running? is the admin key right?)")?;
        let status = res.status();
        let body: Value = res.json().await?;
        if !status.is_success() {
            bail!("creating the benchmark tenant: {status} {body}");
        }
        let api_key = body["api_key"].as_str().context("no api_key in the reply")?.to_owned();
        let ws_url = url.replacen("http", "ws", 1);
        Ok(Self { url: url.to_owned(), ws_url, api_key, http })
    }

    /// Creates a group room of `members` (the first is the creator); returns its id.
    /// Rooms are created with at most 1,000 members; the rest are added one by one.
    pub async fn room(&self, members: &[String]) -> anyhow::Result<String> {
        let first = members.len().min(1000);
        let res = self
            .http
            .post(format!("{}/rooms", self.url))
            .header("X-API-Key", &self.api_key)
            .header("X-User-Id", &members[0])
            .json(&json!({"type": "group", "members": &members[1..first]}))
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        if !status.is_success() {
            bail!("creating a room: {status} {body}");
        }
        let room = body["room_id"].as_str().context("no room_id")?.to_owned();
        for chunk in members[first..].chunks(64) {
            let adds = chunk.iter().map(|user| {
                self.http
                    .post(format!("{}/rooms/{room}/members", self.url))
                    .header("X-API-Key", &self.api_key)
                    .header("X-User-Id", &members[0])
                    .json(&json!({"user_id": user}))
                    .send()
            });
            for res in futures_util::future::join_all(adds).await {
                let res = res?;
                if !res.status().is_success() {
                    bail!("adding a member: {}", res.status());
                }
            }
        }
        Ok(room)
    }

    /// Sends a message over REST; returns its `seq`.
    pub async fn send(&self, room: &str, user: &str, content: &str) -> anyhow::Result<i64> {
        let res = self
            .http
            .post(format!("{}/rooms/{room}/messages", self.url))
            .header("X-API-Key", &self.api_key)
            .header("X-User-Id", user)
            .json(&json!({"content": content}))
            .send()
            .await?;
        let status = res.status();
        let body: Value = res.json().await?;
        if !status.is_success() {
            bail!("send: {status} {body}");
        }
        body["seq"].as_i64().context("no seq")
    }

    /// Opens a socket for `user` in `room`, from `source` (a local address), and waits
    /// for its `connection_status`.
    pub async fn connect(&self, room: &str, user: &str, source: Option<IpAddr>) -> anyhow::Result<Socket> {
        use futures_util::StreamExt as _;
        let url = format!("{}/ws/{room}?token={}&user_id={user}", self.ws_url, self.api_key);
        let mut ws = self.open(url, source).await?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.contains("\"connection_status\"") => return Ok(ws),
                Some(Ok(Message::Close(f))) => bail!("socket closed at connect: {f:?}"),
                Some(Err(e)) => return Err(e.into()),
                None => bail!("socket ended at connect"),
                _ => {}
            }
        }
    }

    /// Opens a Socket.IO connection (Engine.IO v4 over WebSocket only, as
    /// `socket.io-client` does with `transports: ["websocket"]`) for `user`, connects the
    /// namespace with the API key, and joins `room` (`join-chat-room`, with an ack).
    pub async fn connect_socketio(&self, room: &str, user: &str, source: Option<IpAddr>) -> anyhow::Result<Socket> {
        use futures_util::{SinkExt as _, StreamExt as _};
        let url = format!("{}/socket.io/?EIO=4&transport=websocket", self.ws_url);
        let mut ws = self.open(url, source).await?;
        let next_text = async |ws: &mut Socket| -> anyhow::Result<String> {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(t))) if t.as_str() == "2" => ws.send(Message::text("3")).await?,
                    Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
                    Some(Ok(Message::Close(f))) => bail!("socket.io closed at connect: {f:?}"),
                    Some(Err(e)) => return Err(e.into()),
                    None => bail!("socket.io ended at connect"),
                    _ => {}
                }
            }
        };
        let open = next_text(&mut ws).await?;
        if !open.starts_with('0') {
            bail!("socket.io: expected the open packet, got {open:?}");
        }
        ws.send(Message::text(format!("40{}", json!({"token": self.api_key, "userId": user})))).await?;
        let connected = next_text(&mut ws).await?;
        if !connected.starts_with("40") {
            bail!("socket.io: connect refused: {connected:?}");
        }
        ws.send(Message::text(format!("421{}", json!(["join-chat-room", room])))).await?;
        let joined = next_text(&mut ws).await?;
        if joined != r#"431[{"ok":true}]"# {
            bail!("socket.io: join refused: {joined:?}");
        }
        Ok(ws)
    }

    /// A WebSocket to `url` from `source`.
    async fn open(&self, url: String, source: Option<IpAddr>) -> anyhow::Result<Socket> {
        let host = self.ws_url.trim_start_matches("ws://").split('/').next().unwrap_or_default();
        let addr: SocketAddr = tokio::net::lookup_host(host).await?.next().context("gateway address")?;
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        let tcp = socket.connect(addr).await?;
        // A client waiting for each answer before its next frame must not sit on
        // Nagle's algorithm (it cost ~40 ms per round trip with delayed ACKs).
        tcp.set_nodelay(true)?;
        // tungstenite zeroes its whole read buffer (128 KiB by default) on every read:
        // with a thousand sockets that memset was a fifth of the load generator's CPU,
        // taken from the stack it measures. Frames here are small.
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(8 * 1024);
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            url,
            tokio_tungstenite::MaybeTlsStream::Plain(tcp),
            Some(config),
        )
        .await?;
        Ok(ws)
    }
}

/// Nanoseconds since the Unix epoch (embedded in messages to measure send->deliver).
pub fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
}
