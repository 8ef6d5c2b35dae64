//! The errors actix-http answers by itself, in the documented shape.
//!
//! Some requests never reach the application: a request line or header actix-http's
//! parser refuses (a raw `>` or `*` in the path, control bytes in a header, a bad
//! `Content-Length`), too many or too large headers, a request head that does not
//! arrive within the client request timeout. actix-http answers those itself, with an
//! empty body (`400`, `431`, `408`, and `500` for a broken connection state), and offers
//! no hook to render them. So every connection's socket is wrapped ([`JsonErrors`]):
//! on the way out, a response head with an error status and `content-length: 0` — which
//! the gateway's own handlers never send, since every error they answer carries the
//! `{"success":false,"error":...}` body — is replaced by the same status with that body.
//! Once a connection switched protocols (`101`, a WebSocket), its bytes pass untouched.
//!
//! What is matched is exact: actix-http writes the status line and then, first of all
//! headers, `content-length: 0`. Bodies of the gateway's own responses are JSON, whose
//! strings cannot hold a raw CR or LF, so they never contain such a head.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use actix_web::http::StatusCode;
use bytes::{Buf as _, Bytes};
use chat_domain::{ApiError, ErrorCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection's socket whose empty error responses get the documented body.
#[derive(Debug)]
pub struct JsonErrors<T> {
    io: T,
    /// A replacement response not yet written whole.
    pending: Bytes,
    /// After a `101 Switching Protocols`: WebSocket frames, passed through.
    upgraded: bool,
}

impl<T> JsonErrors<T> {
    pub fn new(io: T) -> Self {
        Self { io, pending: Bytes::new(), upgraded: false }
    }
}

impl<T: AsyncWrite + Unpin> JsonErrors<T> {
    /// Writes what is left of a replacement; ready once nothing is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            match Pin::new(&mut self.io).poll_write(cx, &self.pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.pending.advance(n),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrors<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrors<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        if this.upgraded {
            return Pin::new(&mut this.io).poll_write(cx, buf);
        }
        match empty_error_head(buf) {
            // What comes before the head goes out first; the head comes back next call.
            Some(head) if head.start > 0 => Pin::new(&mut this.io).poll_write(cx, &buf[..head.start]),
            Some(head) => {
                this.pending = replacement(head.status);
                // Taken whole; the replacement is written now or on the next flush.
                if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(head.end))
            }
            None => {
                if memchr::memmem::find(buf, b" 101 Switching Protocols\r\n").is_some() {
                    this.upgraded = true;
                }
                Pin::new(&mut this.io).poll_write(cx, buf)
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.io).poll_shutdown(cx),
            other => other,
        }
    }
}

/// An empty error response's head in a written buffer: where it starts and ends (after
/// its blank line), and its status.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    start: usize,
    end: usize,
    status: u16,
}

/// The first head in `buf` of the form `HTTP/1.x NNN <reason>\r\ncontent-length: 0\r\n
/// ...\r\n\r\n` with `NNN` at least 400, whole.
fn empty_error_head(buf: &[u8]) -> Option<Head> {
    let mut from = 0;
    while let Some(at) = memchr::memmem::find(&buf[from..], b"HTTP/1.") {
        let start = from + at;
        if let Some(head) = head_at(buf, start) {
            return Some(head);
        }
        from = start + 1;
    }
    None
}

fn head_at(buf: &[u8], start: usize) -> Option<Head> {
    let line = buf.get(start..)?;
    // "HTTP/1.1 400 "
    let status = line.get(9..12)?;
    if line.get(8) != Some(&b' ') || line.get(12) != Some(&b' ') || !status.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = status.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if status < 400 {
        return None;
    }
    // The exact status line actix-http writes: the canonical reason, then CRLF (a raw
    // CR cannot appear inside a JSON string, so no body of the gateway's holds one).
    let reason = StatusCode::from_u16(status).ok()?.canonical_reason()?;
    let line_end = 13 + reason.len();
    if line.get(13..line_end) != Some(reason.as_bytes()) || line.get(line_end..line_end + 2) != Some(b"\r\n") {
        return None;
    }
    let after = line.get(line_end + 2..)?;
    let length = after.get(..b"content-length: 0\r\n".len())?;
    if !length.eq_ignore_ascii_case(b"content-length: 0\r\n") {
        return None;
    }
    let end = memchr::memmem::find(&line[line_end..], b"\r\n\r\n")? + line_end + 4;
    Some(Head { start, end: start + end, status })
}

/// The documented error for what actix-http refused by itself.
fn error_for(status: u16) -> ApiError {
    match status {
        408 => ApiError::new(ErrorCode::RequestTimeout, "The request did not arrive in time"),
        413 | 431 => ApiError::new(ErrorCode::PayloadTooLarge, "Request headers too large or too many"),
        404 => ApiError::not_found("No such endpoint"),
        400..=499 => ApiError::validation("request", "Malformed HTTP request"),
        503 => ApiError::unavailable("The server cannot take the request now"),
        _ => ApiError::internal(),
    }
}

/// A whole response (the connection closes after it) with the documented body.
fn replacement(status: u16) -> Bytes {
    let body = serde_json::json!({"success": false, "error": error_for(status)}).to_string();
    let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
    Bytes::from(format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BAD: &[u8] = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: x\r\n\r\n";

    #[test]
    fn finds_empty_error_heads_only() {
        assert_eq!(empty_error_head(BAD), Some(Head { start: 0, end: BAD.len(), status: 400 }));
        let mut after_ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec();
        let ok_len = after_ok.len();
        after_ok.extend_from_slice(BAD);
        assert_eq!(empty_error_head(&after_ok), Some(Head { start: ok_len, end: after_ok.len(), status: 400 }));
        assert_eq!(empty_error_head(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n"), None);
        assert_eq!(empty_error_head(b"HTTP/1.1 404 Not Found\r\ncontent-length: 35\r\n\r\n{}"), None);
        assert_eq!(empty_error_head(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n"), None, "not whole");
        let timeout = b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(empty_error_head(timeout).map(|h| h.status), Some(408));
    }

    #[test]
    fn replacements_carry_the_documented_body() -> anyhow::Result<()> {
        for (status, code) in [(400, "VALIDATION_ERROR"), (408, "REQUEST_TIMEOUT"), (431, "PAYLOAD_TOO_LARGE")] {
            let r = replacement(status);
            let text = std::str::from_utf8(&r)?;
            let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| anyhow::anyhow!("no head in {text}"))?;
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")));
            assert!(head.contains(&format!("content-length: {}", body.len())));
            let v: serde_json::Value = serde_json::from_str(body)?;
            assert_eq!(v["success"], false);
            assert_eq!(v["error"]["code"], code);
        }
        Ok(())
    }

    #[tokio::test]
    async fn rewrites_what_it_writes() -> anyhow::Result<()> {
        use tokio::io::AsyncWriteExt as _;
        let mut out = JsonErrors::new(Vec::new());
        out.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}").await?;
        out.write_all(BAD).await?;
        out.flush().await?;
        let text = String::from_utf8(out.io)?;
        assert!(text.starts_with("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 400 Bad Request\r\n"));
        let (_, replaced) = text.split_at(text.find("HTTP/1.1 400").unwrap_or(0));
        let body = replaced.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(body)?;
        assert_eq!(v["error"]["message"], "Malformed HTTP request");
        assert!(!text.contains("content-length: 0"));
        let mut ws = JsonErrors::new(Vec::new());
        ws.write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n").await?;
        ws.write_all(BAD).await?;
        assert!(ws.io.ends_with(BAD), "an upgraded connection's bytes pass untouched");
        Ok(())
    }
}
