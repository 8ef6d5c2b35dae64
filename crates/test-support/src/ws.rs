//! [`WsClient`]: a WebSocket client for any of the gateway's dialects.

use anyhow::{anyhow, bail};
use serde_json::Value;

use crate::wait::{bounded, bounded_for};

/// Longest a wait for one frame, or for the end, may take in all (each read is bounded
/// on its own as well: pings or other frames arriving meanwhile do not extend it).
const WHOLE_WAIT_SECS: u64 = 90;

/// A WebSocket client for tests, for any of the gateway's dialects (frames are JSON
/// objects with a `type`).
pub struct WsClient {
    stream: Stream,
    /// Frames read while looking for another one, in arrival order.
    pub seen: Vec<Value>,
}

/// How a socket ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// A close frame with this code.
    Closed(u16),
    /// The connection dropped without a close frame.
    Dropped,
}

impl WsClient {
    /// Connects to `url` (e.g. `ws://127.0.0.1:port/ws/room?token=..&user_id=..`).
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let (stream, _) = bounded("websocket connect", tokio_tungstenite::connect_async(url)).await??;
        Ok(Self { stream, seen: Vec::new() })
    }

    /// Connects with a tiny TCP receive buffer, so a client that does not read
    /// backs up the server quickly (for slow-consumer tests).
    pub async fn connect_small_buffer(url: &str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("ws://").ok_or_else(|| anyhow!("not a ws:// URL: {url}"))?;
        let host = rest.split('/').next().unwrap_or(rest);
        let addr: std::net::SocketAddr = host.parse()?;
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let tcp = socket.connect(addr).await?;
        let (stream, _) = bounded(
            "websocket connect",
            tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp)),
        )
        .await??;
        Ok(Self { stream, seen: Vec::new() })
    }

    /// Sends a JSON frame.
    pub async fn send(&mut self, frame: Value) -> anyhow::Result<()> {
        use futures_util::SinkExt as _;
        self.stream.send(tokio_tungstenite::tungstenite::Message::text(frame.to_string())).await?;
        Ok(())
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: String) -> anyhow::Result<()> {
        use futures_util::SinkExt as _;
        self.stream.send(tokio_tungstenite::tungstenite::Message::text(text)).await?;
        Ok(())
    }

    /// The next JSON frame (skipping pings), or how the socket ended.
    pub async fn next(&mut self) -> anyhow::Result<Result<Value, Ended>> {
        next_frame(&mut self.stream).await
    }

    /// Reads until a frame of `kind` arrives and returns it (earlier frames go to `seen`).
    pub async fn expect(&mut self, kind: &str) -> anyhow::Result<Value> {
        self.expect_where(kind, |_| true).await
    }

    /// Reads until a frame of `kind` matching `pred` arrives: within 90 s in all, however
    /// many other frames (or pings) keep coming meanwhile.
    pub async fn expect_where(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        let seen = &mut self.seen;
        let stream = &mut self.stream;
        let found = bounded_for(WHOLE_WAIT_SECS, &format!("a {kind:?} frame"), async {
            loop {
                match next_frame(stream).await? {
                    Ok(frame) if frame["type"] == kind && pred(&frame) => return Ok(frame),
                    Ok(frame) => seen.push(frame),
                    Err(end) => bail!("socket ended ({end:?}) while waiting for {kind:?}; saw {seen:?}"),
                }
            }
        })
        .await;
        match found {
            Ok(found) => found,
            Err(e) => Err(e.context(format!("saw {:?}", self.seen))),
        }
    }

    /// Reads nothing through the WebSocket layer (so no ping is answered, as with a
    /// client that has gone silent) until the server closes the connection, and returns
    /// the close code the server sent, parsed straight off the TCP stream. For sockets
    /// that have read no frame yet.
    pub async fn ended_unread(mut self) -> anyhow::Result<Ended> {
        use tokio::io::AsyncReadExt as _;
        let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = self.stream.get_mut() else {
            bail!("ended_unread needs a plain ws:// connection");
        };
        let mut raw = Vec::new();
        bounded("the server to close the connection", tcp.read_to_end(&mut raw)).await??;
        // Server frames are unmasked: [FIN|opcode, len (126: u16 follows, 127: u64), payload].
        let mut at = 0;
        while at + 2 <= raw.len() {
            let opcode = raw[at] & 0x0f;
            let (len, head) = match raw[at + 1] & 0x7f {
                126 if at + 4 <= raw.len() => (usize::from(u16::from_be_bytes([raw[at + 2], raw[at + 3]])), 4),
                127 => bail!("unexpectedly large frame in {raw:?}"),
                n => (usize::from(n), 2),
            };
            let payload = raw.get(at + head..at + head + len).ok_or_else(|| anyhow!("truncated frame in {raw:?}"))?;
            if opcode == 0x8 {
                return Ok(match payload {
                    [hi, lo, ..] => Ended::Closed(u16::from_be_bytes([*hi, *lo])),
                    _ => Ended::Closed(1005),
                });
            }
            at += head + len;
        }
        Ok(Ended::Dropped)
    }

    /// The first frame of `kind` matching `pred`, taken from `seen` if one was passed
    /// over already, else read as [`Self::expect_where`] does. For frames whose order
    /// relative to others is not promised (room and user events travel apart).
    pub async fn take_where(&mut self, kind: &str, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        if let Some(i) = self.seen.iter().position(|f| f["type"] == kind && pred(f)) {
            return Ok(self.seen.remove(i));
        }
        self.expect_where(kind, pred).await
    }

    /// Closes the socket (a normal close frame), as a client leaving does.
    pub async fn close(mut self) -> anyhow::Result<()> {
        bounded("websocket close", self.stream.close(None)).await??;
        Ok(())
    }

    /// Reads until the socket ends and returns how: within 90 s in all, so a socket the
    /// server keeps open (answering its pings) is a failure naming what it sent, not a hang.
    pub async fn ended(&mut self) -> anyhow::Result<Ended> {
        let seen = &mut self.seen;
        let stream = &mut self.stream;
        let ended = bounded_for(WHOLE_WAIT_SECS, "the socket to end", async {
            loop {
                match next_frame(stream).await? {
                    Ok(frame) => seen.push(frame),
                    Err(end) => return anyhow::Ok(end),
                }
            }
        })
        .await;
        match ended {
            Ok(ended) => ended,
            Err(e) => Err(e.context(format!("saw {:?}", self.seen))),
        }
    }
}

type Stream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON frame of `stream` (skipping pings), or how it ended.
async fn next_frame(stream: &mut Stream) -> anyhow::Result<Result<Value, Ended>> {
    use futures_util::StreamExt as _;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = bounded("a websocket frame", stream.next()).await?;
        match msg {
            None | Some(Err(_)) => return Ok(Err(Ended::Dropped)),
            Some(Ok(Message::Text(t))) => return Ok(Ok(serde_json::from_str(&t)?)),
            Some(Ok(Message::Close(frame))) => {
                return Ok(Err(Ended::Closed(frame.map(|f| u16::from(f.code)).unwrap_or(1005))));
            }
            Some(Ok(_)) => continue,
        }
    }
}
