//! The WebSocket connection itself, on actix-web's HTTP/1 server: the handshake, a
//! response body that reads the socket's queue ([`Body`]), and the client's messages
//! ([`Inlet`]: frames decoded, fragments reassembled, protocol violations reported
//! with their close code as [`Broken`]).
//!
//! The body is polled by the connection's own task whenever it can write: it encodes
//! whatever the queue holds into one buffer, so a burst of frames costs one write, and
//! a frame offered by the fan-out reaches the socket with a single wake-up. When the
//! client stops reading, the connection stops polling, the queue's live lane fills
//! and the fan-out closes the socket as too slow — nobody else waits.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_codec::{Decoder as _, Encoder as _};
use actix_http::ws::{Codec, Frame, Item, Message, ProtocolError};
use actix_web::body::{BodyStream, MessageBody as _};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::{Stream, StreamExt as _};

use crate::fanout::receipts::Slot;
use crate::session::queue::{Own, Receiver};

/// RFC 6455: a control frame's payload is at most 125 bytes; a close reason, 123.
const MAX_CONTROL_PAYLOAD: usize = 125;
const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// Completes the handshake: the `101` response whose body writes `queue`, and the
/// stream of the client's messages (at most `max_frame` bytes each, whether sent in
/// one frame or in fragments).
/// `delivered`, when the dialect has the gateway record delivery receipts, learns the
/// `seq` of every message written to the socket.
pub fn upgrade(
    req: &HttpRequest,
    payload: web::Payload,
    queue: Receiver,
    max_frame: usize,
    delivered: Option<Arc<Slot>>,
) -> Result<(HttpResponse, Inlet), actix_web::Error> {
    // Not a WebSocket handshake (no `Upgrade`, a bad key, ...): the documented `400`.
    let mut response = actix_http::ws::handshake(req.head()).map_err(|e| {
        crate::error::HttpError(chat_domain::ApiError::validation("Upgrade", format!("Not a WebSocket handshake: {e}")))
    })?;
    let body = Body { queue, buf: BytesMut::new(), codec: Codec::new(), closed: false, delivered };
    let response = response.message_body(BodyStream::new(body).boxed())?;
    Ok((response.into(), Inlet::new(payload, max_frame)))
}

/// The response body: the socket's queue, encoded.
struct Body {
    queue: Receiver,
    buf: BytesMut,
    codec: Codec,
    /// The close frame was written: the body ends.
    closed: bool,
    delivered: Option<Arc<Slot>>,
}

impl Body {
    fn encode(&mut self, msg: Message) {
        if let Err(e) = self.codec.encode(msg, &mut self.buf) {
            tracing::warn!(error = %e, "could not encode a websocket frame");
        }
    }
}

impl Stream for Body {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.closed {
            return Poll::Ready(None);
        }
        let Some(taken) = this.queue.take(cx.waker()) else { return Poll::Pending };
        for frame in taken.own {
            match frame {
                Own::Text(text) | Own::Replayed { text, .. } => this.encode(Message::Text(text)),
                Own::Ping(bytes) => this.encode(Message::Ping(bytes.slice(..bytes.len().min(MAX_CONTROL_PAYLOAD)))),
                Own::Pong(bytes) => this.encode(Message::Pong(bytes.slice(..bytes.len().min(MAX_CONTROL_PAYLOAD)))),
                Own::Close(mut reason) => {
                    // Strict clients treat an oversized control frame as malformed.
                    if let Some(desc) = reason.as_mut().and_then(|r| r.description.as_mut())
                        && desc.len() > MAX_CLOSE_REASON
                    {
                        let mut end = MAX_CLOSE_REASON;
                        while !desc.is_char_boundary(end) {
                            end -= 1;
                        }
                        desc.truncate(end);
                    }
                    this.encode(Message::Close(reason));
                    this.closed = true;
                    break;
                }
            }
        }
        if !this.closed {
            let mut newest = None;
            for out in taken.live {
                newest = out.seq.or(newest);
                this.encode(Message::Text(out.text));
            }
            if let (Some(seq), Some(slot)) = (newest, &this.delivered) {
                slot.pushed(seq);
            }
        }
        // The buffer goes out whole; a fresh one next time (none kept while idle).
        Poll::Ready(Some(Ok(std::mem::take(&mut this.buf).freeze())))
    }
}

/// Why the client's side of a connection cannot go on, with the close code RFC 6455
/// gives it.
#[derive(Debug)]
pub enum Broken {
    /// `1002`: an unmasked frame, reserved bits set, an unknown opcode, a control frame
    /// over 125 bytes or fragmented, a continuation with nothing to continue (or a new
    /// message inside one), a malformed close frame.
    Protocol(String),
    /// `1007`: a text message that is not UTF-8.
    InvalidUtf8,
    /// `1009`: a frame, or a message reassembled from fragments, over the limit.
    TooLarge,
    /// The connection itself failed; nothing can be sent back.
    Io(String),
}

impl Broken {
    /// The close code to send, and why; `None` when the connection is already gone.
    pub fn close(&self) -> Option<(u16, &'static str)> {
        match self {
            Broken::Protocol(_) => Some((1002, "protocol error")),
            Broken::InvalidUtf8 => Some((1007, "text frames must be UTF-8")),
            Broken::TooLarge => Some((1009, "frame too large")),
            Broken::Io(_) => None,
        }
    }
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Broken::Protocol(why) => write!(f, "protocol error: {why}"),
            Broken::InvalidUtf8 => f.write_str("a text message is not UTF-8"),
            Broken::TooLarge => f.write_str("a frame or message is over the size limit"),
            Broken::Io(why) => write!(f, "connection failed: {why}"),
        }
    }
}

impl From<ProtocolError> for Broken {
    fn from(e: ProtocolError) -> Self {
        match e {
            ProtocolError::Overflow => Broken::TooLarge,
            // The parser reports reserved bits as `Io(InvalidData)`; the payload's own
            // failures never reach here (they are `Broken::Io` already).
            other => Broken::Protocol(other.to_string()),
        }
    }
}

/// A fragmented message being reassembled.
struct Partial {
    text: bool,
    buf: BytesMut,
}

/// The client's frames, with fragmented messages reassembled.
pub struct Inlet {
    payload: actix_web::dev::Payload,
    buf: BytesMut,
    codec: Codec,
    /// The largest frame, and the largest message reassembled from fragments.
    max: usize,
    partial: Option<Partial>,
}

impl Inlet {
    /// The frames of an upgraded connection's request payload, at most `max_frame`
    /// bytes per message.
    pub fn new(payload: web::Payload, max_frame: usize) -> Self {
        Inlet {
            payload: payload.into_inner(),
            buf: BytesMut::new(),
            codec: Codec::new().max_size(max_frame),
            max: max_frame,
            partial: None,
        }
    }

    /// The next message; `None` when the connection ended. A message sent in fragments
    /// (a text or binary frame and its continuations, control frames allowed between
    /// them) comes whole, at most `max` bytes. After an error the connection must be
    /// closed: the stream is not resynchronised.
    pub async fn recv(&mut self) -> Option<Result<Message, Broken>> {
        loop {
            let decoded = match check_header(&self.buf, self.max) {
                Err(broken) => Err(broken),
                Ok(()) => self.codec.decode(&mut self.buf).map_err(Broken::from),
            };
            if self.buf.is_empty() {
                // An empty buffer would still hold the connection's read buffer (its
                // allocation is shared): an idle socket keeps nothing.
                self.buf = BytesMut::new();
            }
            match decoded {
                Ok(Some(frame)) => match self.message(frame) {
                    Ok(Some(message)) => return Some(Ok(message)),
                    Ok(None) => continue,
                    Err(broken) => return Some(Err(broken)),
                },
                Ok(None) => {}
                Err(broken) => return Some(Err(broken)),
            }
            match self.payload.next().await {
                Some(Ok(bytes)) => {
                    if self.buf.is_empty() {
                        self.buf = BytesMut::from(bytes);
                    } else {
                        self.buf.extend_from_slice(&bytes);
                    }
                }
                Some(Err(e)) => return Some(Err(Broken::Io(e.to_string()))),
                None => return None,
            }
        }
    }

    /// A decoded frame as a message: `None` while a fragmented one is incomplete.
    fn message(&mut self, frame: Frame) -> Result<Option<Message>, Broken> {
        match frame {
            // The codec refuses a second start inside a message: this is the first.
            Frame::Continuation(Item::FirstText(bytes)) => self.start(true, &bytes),
            Frame::Continuation(Item::FirstBinary(bytes)) => self.start(false, &bytes),
            Frame::Continuation(Item::Continue(bytes)) => self.extend(&bytes).map(|()| None),
            Frame::Continuation(Item::Last(bytes)) => {
                self.extend(&bytes)?;
                let Partial { text, buf } = self.partial.take().ok_or_else(not_started)?;
                complete(text, buf.freeze()).map(Some)
            }
            Frame::Text(bytes) => complete(true, bytes).map(Some),
            Frame::Binary(bytes) => Ok(Some(Message::Binary(bytes))),
            Frame::Ping(bytes) => Ok(Some(Message::Ping(bytes))),
            Frame::Pong(bytes) => Ok(Some(Message::Pong(bytes))),
            Frame::Close(reason) => Ok(Some(Message::Close(reason))),
        }
    }

    /// Starts reassembling a fragmented message.
    fn start(&mut self, text: bool, bytes: &Bytes) -> Result<Option<Message>, Broken> {
        self.partial = Some(Partial { text, buf: BytesMut::from(&bytes[..]) });
        Ok(None)
    }

    /// Appends a continuation to the message being reassembled.
    fn extend(&mut self, bytes: &Bytes) -> Result<(), Broken> {
        let partial = self.partial.as_mut().ok_or_else(not_started)?;
        if partial.buf.len() + bytes.len() > self.max {
            self.partial = None;
            return Err(Broken::TooLarge);
        }
        partial.buf.extend_from_slice(bytes);
        Ok(())
    }
}

fn not_started() -> Broken {
    Broken::Protocol("a continuation frame with no message to continue".to_owned())
}

/// A whole message's payload.
fn complete(text: bool, bytes: Bytes) -> Result<Message, Broken> {
    if !text {
        return Ok(Message::Binary(bytes));
    }
    ByteString::try_from(bytes).map(Message::Text).map_err(|_| Broken::InvalidUtf8)
}

/// Refuses a frame by its header alone, before its payload is buffered: the codec
/// only measures a frame once all of it has arrived, so a header announcing gigabytes
/// would otherwise be buffered until memory runs out. A control frame over 125 bytes
/// is a protocol error (RFC 6455 §5.5) whatever the limit.
fn check_header(buf: &[u8], max: usize) -> Result<(), Broken> {
    let [first, second, rest @ ..] = buf else { return Ok(()) };
    let declared = match second & 0x7f {
        126 => match rest {
            [a, b, ..] => u64::from(u16::from_be_bytes([*a, *b])),
            _ => return Ok(()),
        },
        127 => match rest.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => u64::from_be_bytes(b),
            None => return Ok(()),
        },
        n => u64::from(n),
    };
    let control = first & 0x08 != 0;
    if control && declared > MAX_CONTROL_PAYLOAD as u64 {
        return Err(Broken::Protocol(format!("a control frame of {declared} bytes")));
    }
    if declared > max as u64 {
        return Err(Broken::TooLarge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(first: u8, len: u64) -> Vec<u8> {
        let mut h = vec![first];
        match len {
            0..=125 => h.push(0x80 | len as u8),
            126..=65_535 => {
                h.push(0x80 | 126);
                h.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                h.push(0x80 | 127);
                h.extend_from_slice(&len.to_be_bytes());
            }
        }
        h
    }

    #[test]
    fn headers_are_judged_before_their_payload_arrives() {
        let max = 1024;
        assert!(check_header(&head(0x81, 1024), max).is_ok());
        assert!(matches!(check_header(&head(0x81, 1025), max), Err(Broken::TooLarge)));
        assert!(matches!(check_header(&head(0x81, 1 << 40), max), Err(Broken::TooLarge)));
        assert!(matches!(check_header(&head(0x89, 126), max), Err(Broken::Protocol(_))), "a ping over 125 bytes");
        assert!(check_header(&head(0x89, 125), max).is_ok());
        // Not enough of the header yet: nothing to judge.
        assert!(check_header(&[0x81], max).is_ok());
        assert!(check_header(&head(0x81, 1 << 40)[..5], max).is_ok());
    }

    #[test]
    fn close_codes_follow_rfc_6455() {
        assert_eq!(Broken::InvalidUtf8.close().map(|c| c.0), Some(1007));
        assert_eq!(Broken::from(ProtocolError::UnmaskedFrame).close().map(|c| c.0), Some(1002));
        assert_eq!(Broken::from(ProtocolError::InvalidOpcode(3)).close().map(|c| c.0), Some(1002));
        assert_eq!(Broken::from(ProtocolError::ContinuationNotStarted).close().map(|c| c.0), Some(1002));
        assert_eq!(Broken::from(ProtocolError::Overflow).close().map(|c| c.0), Some(1009));
        assert_eq!(Broken::Io("reset".to_owned()).close(), None);
        assert!(matches!(complete(true, Bytes::from_static(b"\xff")), Err(Broken::InvalidUtf8)));
        assert!(matches!(complete(true, Bytes::from_static("é".as_bytes())), Ok(Message::Text(_))));
    }
}
