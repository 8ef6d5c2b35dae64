//! A deadline on every request body: a client that sends its body slowly (a byte now
//! and then) held a connection, a worker's buffer and the handler's state for as long
//! as it liked. Each request's payload is wrapped so that, once `GATEWAY_BODY_TIMEOUT_SECS`
//! have passed since the request arrived and the body is still not all there, reading
//! it fails with [`gateway_core::body::BODY_TIMED_OUT`]; the readers answer that as the
//! documented `408 REQUEST_TIMEOUT` (`gateway_core::body::timed_out`). A body already
//! received is never cut: the deadline only fires while waiting for more. WebSocket
//! upgrades are left alone (their "body" is the socket, which has its own idle timeout).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpMessage as _;
use actix_web::dev::{Payload, ServiceRequest};
use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use futures_util::Stream;

/// Puts the deadline `within` from now on `req`'s body.
pub fn limit(req: &mut ServiceRequest, within: Duration) {
    if req.headers().contains_key(actix_web::http::header::UPGRADE) {
        return;
    }
    let inner = req.take_payload();
    let stream = Deadline { inner, sleep: Box::pin(tokio::time::sleep(within)), expired: false };
    req.set_payload(Payload::Stream { payload: Box::pin(stream) });
}

/// A payload that fails once its deadline passed while more was awaited.
struct Deadline {
    inner: Payload,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: bool,
}

impl Stream for Deadline {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Pending => match this.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    this.expired = true;
                    Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        gateway_core::body::BODY_TIMED_OUT,
                    )))))
                }
                Poll::Pending => Poll::Pending,
            },
            ready => ready,
        }
    }
}
