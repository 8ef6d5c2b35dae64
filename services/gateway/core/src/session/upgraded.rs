//! WebSocket connections off actix-http's HTTP/1 dispatcher.
//!
//! actix-http's dispatcher keeps two 8 KiB buffers (read and write) for as long as a
//! connection lives, whether or not anything moves: two thirds of what an idle socket
//! cost. A WebSocket handshake (`Upgrade: websocket`) is therefore handed over by the
//! dispatcher (its `upgrade` service; the dispatcher and its buffers are dropped) to
//! [`serve`], which answers it with the same application — every route, middleware,
//! admission and error is the one a plain request gets — and then carries the
//! connection itself with buffers that exist only while bytes move:
//!
//! - the client's bytes are read when the session asks for them (its `Inlet` polls the
//!   request payload), through a buffer on the stack, into a chunk the size of what
//!   arrived; nothing is kept between reads;
//! - the response body (the socket's queue, encoded) is written chunk by chunk as it
//!   comes; only a chunk the kernel did not take whole waits, and it is the chunk
//!   itself, not a copy.
//!
//! The connection runs on a task of its own ([`hand_over`]): the dispatcher's task ends
//! with the handover. So an upgraded connection is not among those actix-server counts
//! (nor under its per-worker limit); the gateway's socket caps bound them, and its
//! shutdown waits for them ([`Open`]).
//!
//! Once the body has ended, our side is shut down and whatever the client still sends
//! is read and dropped for a second (`linger`), so that closing does not reset the
//! connection under a client that has not read our close frame yet.
//!
//! A response other than `101 Switching Protocols` (a refused handshake answered with
//! an HTTP error) is written with the request's HTTP/1 codec, body and all, and the
//! connection is closed after it.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use actix_codec::{AsyncRead, AsyncWrite, Encoder as _, Framed, ReadBuf};
use actix_http::body::{BoxBody, MessageBody};
use actix_http::error::PayloadError;
use actix_http::h1::{Codec, Message};
use actix_http::{ConnectionType, Payload, Request, Response, StatusCode};
use actix_web::dev::Service;
use bytes::{Bytes, BytesMut};
use futures_util::Stream;

/// Bytes read from the socket at most per read (on the stack, copied out at their size).
const READ_CHUNK: usize = 8 * 1024;
/// Longest a closed connection still reads what the client sends (see `linger`).
const LINGER: Duration = Duration::from_secs(1);

/// The upgraded connections open on one server (their own tasks, see [`hand_over`]).
#[derive(Debug, Clone, Default)]
pub struct Open(Arc<AtomicUsize>);

impl Open {
    /// How many are still open: shutting down waits for them, as actix-server waits for
    /// the connections it still counts.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One open upgraded connection, counted while it lives.
struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Takes an upgrade request from the dispatcher: [`serve`] runs on a task of its own
/// (counted in `open`), so the dispatcher's task — sized for a whole HTTP/1
/// dispatcher — ends at once.
pub async fn hand_over<S, T>(
    open: Open,
    app: Rc<S>,
    req: Request,
    framed: Framed<T, Codec>,
) -> Result<(), actix_http::Error>
where
    S: Service<Request> + 'static,
    S::Response: Into<Response<BoxBody>>,
    S::Error: Into<Response<BoxBody>>,
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    open.0.fetch_add(1, Ordering::Relaxed);
    let counted = Counted(open.0);
    let serving = serve(app, req, framed);
    actix_web::rt::spawn(async move {
        let _counted = counted;
        serving.await;
    });
    Ok(())
}

/// Answers an upgrade request with `app`, then carries its connection to the end.
/// Failures of the connection itself (a reset, a broken pipe) end it quietly: they are
/// the client's, and its session notices them as the end of its stream.
///
/// Only the connection, its body and a flag are kept for the connection's life: the
/// answering (the request, the application's call, the codec) is boxed and gone once
/// the head is written.
pub fn serve<S, T>(app: Rc<S>, req: Request, framed: Framed<T, Codec>) -> impl Future<Output = ()> + 'static
where
    S: Service<Request> + 'static,
    S::Response: Into<Response<BoxBody>>,
    S::Error: Into<Response<BoxBody>>,
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let parts = framed.into_parts();
    let io = Rc::new(RefCell::new(parts.io));
    // Bytes the client sent after its head (its first frames, if it did not wait for
    // the answer): copied out, so the dispatcher's 8 KiB read buffer is not kept for them.
    let early = (!parts.read_buf.is_empty()).then(|| Bytes::copy_from_slice(&parts.read_buf));
    let reader = Reader { io: io.clone(), early, done: false };
    let payload: actix_http::BoxedPayloadStream = Box::pin(reader);
    let (req, _) = req.replace_payload(Payload::from(payload));
    let answering: Pin<Box<dyn Future<Output = io::Result<Answered>>>> =
        Box::pin(answer(app, req, parts.codec, io.clone()));
    async move {
        let carried = match answering.await {
            Ok(Answered::Switching(body)) => carry(&io, body).await,
            // Rare and short: its codec is boxed with it.
            Ok(Answered::Http(body, codec)) => Box::pin(carry_http(&io, body, codec)).await,
            Err(e) => Err(e),
        };
        let ended = match carried {
            Ok(()) => Box::pin(finish(&io)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = ended {
            tracing::debug!(error = %e, "upgraded connection ended");
        }
        Box::pin(linger(&io)).await;
    }
}

/// Our side is closed: the client's last bytes (its answer to our close frame, or frames
/// it sent before reading it) are read and dropped for up to [`LINGER`], so that closing
/// the socket does not reset the connection under a client still writing — as
/// actix-http's client-disconnect timeout did. The session's own closing handshake reads
/// first; this only reads once it has let go of the connection.
async fn linger<T: AsyncRead + Unpin>(io: &Rc<RefCell<T>>) {
    let drained = async {
        loop {
            if Rc::strong_count(io) > 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let mut space = [MaybeUninit::<u8>::uninit(); 1024];
            let mut read = ReadBuf::uninit(&mut space);
            match poll_fn(|cx| Pin::new(&mut *io.borrow_mut()).poll_read(cx, &mut read)).await {
                Ok(()) if !read.filled().is_empty() => {}
                _ => return,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drained).await;
}

/// The answer's head is written; what follows it.
enum Answered {
    /// After a `101`: the body is the connection's bytes, as they are.
    Switching(BoxBody),
    /// Any other answer: a body written with the request's codec, then the end.
    Http(BoxBody, Codec),
}

/// Calls the application and writes the head of its answer.
async fn answer<S, T>(app: Rc<S>, req: Request, mut codec: Codec, io: Rc<RefCell<T>>) -> io::Result<Answered>
where
    S: Service<Request>,
    S::Response: Into<Response<BoxBody>>,
    S::Error: Into<Response<BoxBody>>,
    T: AsyncWrite + Unpin,
{
    let res: Response<BoxBody> = match app.call(req).await {
        Ok(res) => res.into(),
        Err(err) => err.into(),
    };
    let (mut head, body) = res.into_parts();
    let switching = head.status() == StatusCode::SWITCHING_PROTOCOLS;
    if !switching {
        // The connection ends with this answer: say so.
        head.head_mut().set_connection_type(ConnectionType::Close);
    }
    let mut buf = BytesMut::new();
    codec.encode(Message::Item((head, body.size())), &mut buf)?;
    write_all(&io, buf.freeze()).await?;
    Ok(if switching { Answered::Switching(body) } else { Answered::Http(body, codec) })
}

/// Writes a `101`'s body (the socket's frames) as it comes.
async fn carry<T: AsyncWrite + Unpin>(io: &RefCell<T>, body: BoxBody) -> io::Result<()> {
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = poll_fn(|cx| body.as_mut().poll_next(cx)).await {
        write_all(io, chunk.map_err(|e| io::Error::other(e.to_string()))?).await?;
    }
    Ok(())
}

/// Writes any other answer's body with its codec.
async fn carry_http<T: AsyncWrite + Unpin>(io: &RefCell<T>, body: BoxBody, mut codec: Codec) -> io::Result<()> {
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = poll_fn(|cx| body.as_mut().poll_next(cx)).await {
        let mut buf = BytesMut::new();
        codec.encode(Message::Chunk(Some(chunk.map_err(|e| io::Error::other(e.to_string()))?)), &mut buf)?;
        write_all(io, buf.freeze()).await?;
    }
    let mut buf = BytesMut::new();
    codec.encode(Message::Chunk(None), &mut buf)?;
    write_all(io, buf.freeze()).await
}

/// Flushes and closes our side of the connection.
async fn finish<T: AsyncWrite + Unpin>(io: &RefCell<T>) -> io::Result<()> {
    poll_fn(|cx| Pin::new(&mut *io.borrow_mut()).poll_flush(cx)).await?;
    poll_fn(|cx| Pin::new(&mut *io.borrow_mut()).poll_shutdown(cx)).await
}

/// Writes `bytes` whole; what the kernel does not take at once waits in `bytes` itself.
async fn write_all<T: AsyncWrite + Unpin>(io: &RefCell<T>, mut bytes: Bytes) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = poll_fn(|cx| Pin::new(&mut *io.borrow_mut()).poll_write(cx, &bytes)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let _ = bytes.split_to(n);
    }
    Ok(())
}

/// The request payload of an upgraded connection: the client's bytes, read when asked for.
struct Reader<T> {
    io: Rc<RefCell<T>>,
    early: Option<Bytes>,
    done: bool,
}

impl<T: AsyncRead + Unpin> Stream for Reader<T> {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let Some(early) = this.early.take() {
            return Poll::Ready(Some(Ok(early)));
        }
        if this.done {
            return Poll::Ready(None);
        }
        let mut space = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut read = ReadBuf::uninit(&mut space);
        match Pin::new(&mut *this.io.borrow_mut()).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => {
                this.done = true;
                Poll::Ready(Some(Err(PayloadError::Io(e))))
            }
            Poll::Ready(Ok(())) if read.filled().is_empty() => {
                this.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Ok(())) => Poll::Ready(Some(Ok(Bytes::copy_from_slice(read.filled())))),
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_http::ServiceConfig;
    use actix_http::body::BodyStream;
    use actix_web::dev::fn_service;
    use futures_util::StreamExt as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

    use super::*;

    const HANDSHAKE: &str = "GET /ws HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
                             sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n";

    /// The dispatcher's side: the request decoded from what the client sent so far.
    async fn handed_over(server: DuplexStream) -> anyhow::Result<(Request, Framed<DuplexStream, Codec>)> {
        let mut framed = Framed::new(server, Codec::new(ServiceConfig::default()));
        match framed.next().await {
            Some(Ok(Message::Item(req))) => Ok((req, framed)),
            other => anyhow::bail!("no request head: {other:?}"),
        }
    }

    /// Reads until `want` has arrived (or the stream ended); everything read.
    async fn read_until(client: &mut DuplexStream, want: &str) -> anyhow::Result<String> {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).contains(want) {
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut chunk)).await??;
            anyhow::ensure!(n > 0, "ended before {want:?}: {:?}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&chunk[..n]);
        }
        Ok(String::from_utf8_lossy(&seen).into_owned())
    }

    #[actix_web::test]
    async fn an_upgraded_connection_carries_bytes_both_ways_including_those_sent_with_the_head() -> anyhow::Result<()> {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        // The client's first bytes come in the same write as its handshake.
        client.write_all(format!("{HANDSHAKE}early").as_bytes()).await?;
        let (req, framed) = handed_over(server).await?;
        // An echo: the body is the request's payload as it is read.
        let app = Rc::new(fn_service(|mut req: Request| async move {
            let echo = req.take_payload().map(|chunk| chunk.map(|b| Bytes::from([&b"echo:"[..], &b[..]].concat())));
            let res = Response::build(StatusCode::SWITCHING_PROTOCOLS)
                .upgrade("websocket")
                .body(BodyStream::new(echo))
                .map_into_boxed_body();
            Ok::<_, Response<BoxBody>>(res)
        }));
        let served = tokio::task::spawn_local(serve(app, req, framed));
        let head = read_until(&mut client, "echo:early").await?;
        assert!(head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{head:?}");
        assert!(!head.contains("content-length") && !head.contains("transfer-encoding"), "{head:?}");
        // Idle in between: nothing is held for the connection, and it still carries.
        client.write_all(b"later").await?;
        assert!(read_until(&mut client, "echo:later").await?.ends_with("echo:later"));
        // The client ends its side: the payload ends, so does the body and the connection.
        client.shutdown().await?;
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await?;
        assert!(rest.is_empty(), "{rest:?}");
        served.await?;
        Ok(())
    }

    #[actix_web::test]
    async fn a_client_still_writing_after_the_end_is_not_reset() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let mut client = tokio::net::TcpStream::connect(listener.local_addr()?).await?;
        let (server, _) = listener.accept().await?;
        client.write_all(HANDSHAKE.as_bytes()).await?;
        let mut framed = Framed::new(server, Codec::new(ServiceConfig::default()));
        let Some(Ok(Message::Item(req))) = framed.next().await else { anyhow::bail!("no request head") };
        // The application ends the connection at once, without reading what the client sends.
        let app = Rc::new(fn_service(|_: Request| async {
            let res = Response::build(StatusCode::SWITCHING_PROTOCOLS)
                .upgrade("websocket")
                .body(BodyStream::new(futures_util::stream::iter([Ok::<_, PayloadError>(Bytes::from_static(b"bye"))])))
                .map_into_boxed_body();
            Ok::<_, Response<BoxBody>>(res)
        }));
        let served = tokio::task::spawn_local(serve(app, req, framed));
        let mut seen = Vec::new();
        let mut chunk = [0u8; 1024];
        while !String::from_utf8_lossy(&seen).ends_with("bye") {
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut chunk)).await??;
            anyhow::ensure!(n > 0, "ended early");
            seen.extend_from_slice(&chunk[..n]);
        }
        // The server's side is closed; the client, not having read that yet, still writes.
        for _ in 0..20 {
            client.write_all(&[0u8; 4096]).await?;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // Its writes were taken (read and dropped), not answered with a reset.
        assert_eq!(tokio::time::timeout(std::time::Duration::from_secs(5), client.read(&mut chunk)).await??, 0);
        served.await?;
        Ok(())
    }

    #[actix_web::test]
    async fn a_refused_upgrade_gets_its_http_answer_and_the_connection_closes() -> anyhow::Result<()> {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        client.write_all(HANDSHAKE.as_bytes()).await?;
        let (req, framed) = handed_over(server).await?;
        let app = Rc::new(fn_service(|_: Request| async {
            Err::<Response<BoxBody>, _>(
                Response::build(StatusCode::UNAUTHORIZED).body(r#"{"success":false}"#).map_into_boxed_body(),
            )
        }));
        let served = tokio::task::spawn_local(serve(app, req, framed));
        let mut answer = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(5), client.read_to_end(&mut answer)).await??;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{answer:?}");
        assert!(answer.contains("connection: close\r\n"), "{answer:?}");
        assert!(answer.ends_with("\r\n\r\n{\"success\":false}"), "{answer:?}");
        served.await?;
        Ok(())
    }
}
