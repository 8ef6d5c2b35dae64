//! The WebSocket connection itself, on actix-web's HTTP/1 server: the handshake, a
//! response body that reads the socket's queue ([`Body`]), and the client's frames
//! ([`Inlet`]).
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
use actix_http::ws::{Codec, Frame, Message, ProtocolError};
use actix_web::body::{BodyStream, MessageBody as _};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::{Stream, StreamExt as _};

use super::queue::{Own, Receiver};
use crate::fanout::receipts::Slot;

/// RFC 6455: a control frame's payload is at most 125 bytes; a close reason, 123.
const MAX_CONTROL_PAYLOAD: usize = 125;
const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

/// Completes the handshake: the `101` response whose body writes `queue`, and the
/// stream of the client's frames (at most `max_frame` bytes each).
/// `delivered`, when the dialect has the gateway record delivery receipts, learns the
/// `seq` of every message written to the socket.
pub fn upgrade(
    req: &HttpRequest,
    payload: web::Payload,
    queue: Receiver,
    max_frame: usize,
    delivered: Option<Arc<Slot>>,
) -> Result<(HttpResponse, Inlet), actix_web::Error> {
    let mut response = actix_http::ws::handshake(req.head())?;
    let body = Body { queue, buf: BytesMut::new(), codec: Codec::new(), closed: false, delivered };
    let response = response.message_body(BodyStream::new(body).boxed())?;
    let inlet = Inlet { payload: payload.into_inner(), buf: BytesMut::new(), codec: Codec::new().max_size(max_frame) };
    Ok((response.into(), inlet))
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

/// The client's frames.
pub struct Inlet {
    payload: actix_web::dev::Payload,
    buf: BytesMut,
    codec: Codec,
}

impl Inlet {
    /// The next frame; `None` when the connection ended. Fragmented messages
    /// (continuation frames) are answered as [`Message::Continuation`] for the session
    /// to ignore or refuse.
    pub async fn recv(&mut self) -> Option<Result<Message, ProtocolError>> {
        loop {
            let decoded = self.codec.decode(&mut self.buf);
            if self.buf.is_empty() {
                // An empty buffer would still hold the connection's read buffer (its
                // allocation is shared): an idle socket keeps nothing.
                self.buf = BytesMut::new();
            }
            match decoded {
                Ok(Some(frame)) => return Some(message(frame)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            match self.payload.next().await {
                Some(Ok(bytes)) => {
                    if self.buf.is_empty() {
                        self.buf = BytesMut::from(bytes);
                    } else {
                        self.buf.extend_from_slice(&bytes);
                    }
                }
                Some(Err(e)) => return Some(Err(ProtocolError::Io(std::io::Error::other(e)))),
                None => return None,
            }
        }
    }
}

fn message(frame: Frame) -> Result<Message, ProtocolError> {
    Ok(match frame {
        Frame::Text(bytes) => Message::Text(
            ByteString::try_from(bytes)
                .map_err(|e| ProtocolError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?,
        ),
        Frame::Binary(bytes) => Message::Binary(bytes),
        Frame::Ping(bytes) => Message::Ping(bytes),
        Frame::Pong(bytes) => Message::Pong(bytes),
        Frame::Close(reason) => Message::Close(reason),
        Frame::Continuation(item) => Message::Continuation(item),
    })
}
