//! Clients that write bytes as they are, for tests of what no well-behaved library
//! sends: [`RawWs`] writes WebSocket frames bit by bit (fragments, reserved bits, unknown
//! opcodes, unmasked frames, bad UTF-8), [`raw_http`] writes a request as given (raw
//! `>` in a path, control bytes in headers, hundreds of headers).

use std::time::Duration;

use anyhow::{anyhow, bail};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::{Ended, bounded};

/// WebSocket opcodes.
pub mod op {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// The FIN bit of a frame's first byte.
pub const FIN: u8 = 0x80;

/// A frame as the server sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// A WebSocket connection driven frame by frame.
pub struct RawWs {
    tcp: TcpStream,
    /// Bytes read and not yet parsed into frames.
    buf: Vec<u8>,
}

/// The bytes of one client frame: `first` is FIN, RSV and opcode as sent; the payload is
/// masked when `masked`.
pub fn frame_bytes(first: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=65_535 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

impl RawWs {
    /// Opens `url` (`ws://127.0.0.1:<port>/<path>?<query>`) with a hand-written
    /// handshake; fails unless the server switches protocols.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let rest = url.strip_prefix("ws://").ok_or_else(|| anyhow!("not a ws:// URL: {url}"))?;
        let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}"))).unwrap_or((rest, "/".to_owned()));
        let mut tcp = bounded("tcp connect", TcpStream::connect(host)).await??;
        tcp.set_nodelay(true)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = bounded("the handshake's answer", tcp.read(&mut chunk)).await??;
            if n == 0 {
                bail!("the connection closed during the handshake: {}", String::from_utf8_lossy(&buf));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        if !head.starts_with("HTTP/1.1 101") {
            bail!("no protocol switch: {head}");
        }
        buf.drain(..head_end);
        Ok(Self { tcp, buf })
    }

    /// Writes bytes as they are.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.tcp.write_all(bytes).await?;
        Ok(())
    }

    /// Writes one frame (see [`frame_bytes`]).
    pub async fn send_frame(&mut self, first: u8, masked: bool, payload: &[u8]) -> anyhow::Result<()> {
        self.send_raw(&frame_bytes(first, masked, payload)).await
    }

    /// Writes a whole, masked text frame.
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        self.send_frame(FIN | op::TEXT, true, text.as_bytes()).await
    }

    /// The next frame the server sends; `None` when the connection ended.
    pub async fn next_frame(&mut self) -> anyhow::Result<Option<Frame>> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf)? {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 16 * 1024];
            let read = bounded("a frame from the server", self.tcp.read(&mut chunk)).await?;
            match read {
                Ok(0) | Err(_) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next JSON text frame (pings and pongs skipped), or how the socket ended.
    pub async fn next_json(&mut self) -> anyhow::Result<Result<Value, Ended>> {
        loop {
            match self.next_frame().await? {
                None => return Ok(Err(Ended::Dropped)),
                Some(Frame { opcode: op::TEXT, payload }) => return Ok(Ok(serde_json::from_slice(&payload)?)),
                Some(Frame { opcode: op::CLOSE, payload }) => {
                    return Ok(Err(Ended::Closed(match payload[..] {
                        [hi, lo, ..] => u16::from_be_bytes([hi, lo]),
                        _ => 1005,
                    })));
                }
                Some(_) => continue,
            }
        }
    }

    /// Reads until a JSON frame whose `type` is `kind` arrives.
    pub async fn expect(&mut self, kind: &str) -> anyhow::Result<Value> {
        let mut seen = Vec::new();
        loop {
            match self.next_json().await? {
                Ok(frame) if frame["type"] == kind => return Ok(frame),
                Ok(frame) => seen.push(frame),
                Err(end) => bail!("socket ended ({end:?}) while waiting for {kind:?}; saw {seen:?}"),
            }
        }
    }

    /// Reads until the socket ends; how it ended, and the JSON frames before.
    pub async fn ended(&mut self) -> anyhow::Result<(Ended, Vec<Value>)> {
        let mut seen = Vec::new();
        loop {
            match self.next_json().await? {
                Ok(frame) => seen.push(frame),
                Err(end) => return Ok((end, seen)),
            }
        }
    }

    /// Sends a ping and waits for its pong: the socket is alive and in sync.
    pub async fn ping_pong(&mut self) -> anyhow::Result<()> {
        self.send_frame(FIN | op::PING, true, b"alive?").await?;
        loop {
            match self.next_frame().await? {
                Some(Frame { opcode: op::PONG, payload }) if payload == b"alive?" => return Ok(()),
                Some(Frame { opcode: op::CLOSE, payload }) => bail!("closed instead of a pong: {payload:?}"),
                Some(_) => continue,
                None => bail!("the connection ended instead of a pong"),
            }
        }
    }
}

/// A whole server frame at the start of `buf`, and how many bytes it took.
fn parse_server_frame(buf: &[u8]) -> anyhow::Result<Option<(Frame, usize)>> {
    let [first, second, rest @ ..] = buf else { return Ok(None) };
    if second & 0x80 != 0 {
        bail!("the server masked a frame");
    }
    let (len, head) = match second & 0x7f {
        126 => match rest {
            [a, b, ..] => (usize::from(u16::from_be_bytes([*a, *b])), 4),
            _ => return Ok(None),
        },
        127 => match rest.get(..8) {
            Some(b) => (usize::try_from(u64::from_be_bytes(b.try_into()?))?, 10),
            None => return Ok(None),
        },
        n => (usize::from(n), 2),
    };
    match buf.get(head..head + len) {
        Some(payload) => Ok(Some((Frame { opcode: first & 0x0f, payload: payload.to_vec() }, head + len))),
        None => Ok(None),
    }
}

/// An HTTP response read off a raw connection.
#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body as JSON.
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| anyhow!("{e}: not JSON: {:?} (head {:?})", String::from_utf8_lossy(&self.body), self.head))
    }

    /// Checks the documented error shape: `{"success":false,"error":{"code","message"}}`
    /// with `code`, and the status.
    pub fn expect_error(&self, status: u16, code: &str) -> anyhow::Result<Value> {
        let body = self.json()?;
        if self.status != status || body["success"] != false || body["error"]["code"] != code {
            bail!("expected {status} {code}, got {} {body}", self.status);
        }
        if !body["error"]["message"].is_string() {
            bail!("an error without a message: {body}");
        }
        Ok(body)
    }
}

/// Writes `request` to `127.0.0.1:port` as it is, then reads one response (until the
/// server closes, or the body its `content-length` announces). `pause` waits that long
/// after connecting before writing anything (a slow client).
pub async fn raw_http(port: u16, request: &[u8], pause: Option<Duration>) -> anyhow::Result<RawResponse> {
    let mut tcp = bounded("tcp connect", TcpStream::connect(("127.0.0.1", port))).await??;
    if let Some(pause) = pause {
        tokio::time::sleep(pause).await;
    }
    // The server may answer and close before reading all of a bad request.
    let _ = tcp.write_all(request).await;
    let mut raw = Vec::new();
    loop {
        if let Some(response) = parse_response(&raw)? {
            return Ok(response);
        }
        let mut chunk = [0u8; 16 * 1024];
        let read = bounded("the server's answer", tcp.read(&mut chunk)).await?;
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
        }
    }
    Err(anyhow!("no whole response before the connection closed: {:?}", String::from_utf8_lossy(&raw)))
}

/// Writes `request` (several requests, pipelined) and reads every response until the
/// server closes the connection.
pub async fn raw_http_all(port: u16, request: &[u8]) -> anyhow::Result<Vec<RawResponse>> {
    let mut tcp = bounded("tcp connect", TcpStream::connect(("127.0.0.1", port))).await??;
    let _ = tcp.write_all(request).await;
    let mut raw = Vec::new();
    // Reads until the server closes (an error answer closes the connection).
    let _ = bounded("the server to close the connection", tcp.read_to_end(&mut raw)).await?;
    let mut responses = Vec::new();
    let mut rest = &raw[..];
    while let Some(response) = parse_response(rest)? {
        let used = response.head.len() + 4 + response.body.len();
        responses.push(response);
        rest = &rest[used..];
    }
    if !rest.is_empty() {
        bail!("bytes after the last whole response: {:?}", String::from_utf8_lossy(rest));
    }
    Ok(responses)
}

fn parse_response(raw: &[u8]) -> anyhow::Result<Option<RawResponse>> {
    let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
    let head = String::from_utf8_lossy(&raw[..at]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| anyhow!("no status in {head:?}"))?;
    let length = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok());
    let body = &raw[at + 4..];
    match length {
        Some(n) if body.len() >= n => Ok(Some(RawResponse { status, head, body: body[..n].to_vec() })),
        _ => Ok(None),
    }
}
