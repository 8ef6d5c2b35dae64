//! `POST /api/chat/{id}/messages/file`: a multipart form with one `file` (and an
//! optional `content` caption and `replyToMessageId`) becomes a message of the chat
//! carrying the file as its attachment.
//!
//! The order of the work is what keeps "nothing stored" true for every refusal:
//!
//! 1. The caller (a Bearer token, or the API key with `X-User-Id`, as on every chat
//!    route) must be a participant (`403` / `404`), before a byte of the body is read.
//! 2. A declared `Content-Length` past the tenant's limit (plus room for the form's
//!    other fields) is `413` at once.
//! 3. The file's first bytes decide its type ([`sniff`]); a type the tenant does not
//!    allow is `415` before anything is written.
//! 4. The file streams into the store as it arrives; passing the limit (`413`), or
//!    text turning out not to be text (`415`), aborts the write, which leaves nothing.
//! 5. Only when the whole form has been read and checked is the write completed and
//!    the message sent through the normal send path (so it gets a `seq`, reaches every
//!    dialect and is listed by history); if the send fails, the object is deleted.
//!
//! On a refusal the rest of the body is read and discarded (up to the limit), so a
//! client still writing its upload reads the answer instead of a reset connection.

use actix_multipart::{Field, Multipart};
use actix_web::error::PayloadError;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, dev, web};
use bytes::Bytes;
use chat_domain::ids::{MessageId, RoomId};
use chat_domain::model::{Actor, Attachment, MessageContent};
use chat_domain::proto::store::{GetRoom, SendMessage};
use chat_domain::{ApiError, ErrorCode};
use futures_util::{Stream, StreamExt as _};
use std::cell::RefCell;
use std::rc::Rc;
use std::task::{Context, Poll};

use schemars::JsonSchema;

use crate::error::{ChatResult, ok};
use crate::extract::{ChatCaller, InChat};
use crate::messages::OneMessage;
use crate::render;
use gateway_core::Core;
use gateway_core::attachments::sniff::{self, TextCheck};
use gateway_core::attachments::store::{Store, Writer};
use gateway_core::extract::{Cx, Part as _};

/// Room in a form for everything but the file: boundaries, part headers and the two
/// short fields (a caption is at most 16,000 characters, 64 KiB of UTF-8).
pub const FORM_OVERHEAD: u64 = 80 * 1024;
/// Largest `content` field, in bytes.
const MAX_CAPTION_BYTES: usize = 64 * 1024;
/// Largest `replyToMessageId` field, in bytes.
const MAX_REPLY_BYTES: usize = 256;
/// Longest stored file name, in characters.
const MAX_FILENAME_CHARS: usize = 255;

fn too_large(limit: u64) -> ApiError {
    ApiError::new(ErrorCode::PayloadTooLarge, format!("The file must be at most {limit} bytes"))
}

fn unsupported(mime: &str) -> ApiError {
    ApiError::new(ErrorCode::UnsupportedMediaType, format!("Files of type {mime} are not allowed here"))
        .with_field("file")
}

fn malformed(e: impl std::error::Error + 'static) -> ApiError {
    gateway_core::body::timed_out(&e)
        .unwrap_or_else(|| ApiError::validation("body", format!("Malformed multipart/form-data body: {e}")))
}

/// A file name as stored and shown: the last path component, without control
/// characters, trimmed, at most [`MAX_FILENAME_CHARS`]; `file` when nothing is left.
pub fn clean_filename(raw: Option<&str>) -> String {
    let base = raw.unwrap_or_default().rsplit(['/', '\\']).next().unwrap_or_default();
    let name: String = base.chars().filter(|c| !c.is_control()).take(MAX_FILENAME_CHARS).collect();
    let name = name.trim();
    if name.is_empty() || name == "." || name == ".." { "file".to_owned() } else { name.to_owned() }
}

/// What the form carried; its schema is the request body's (`multipart/form-data`).
#[derive(Default, JsonSchema)]
#[schemars(rename = "ChatFileForm")]
pub(crate) struct Form {
    /// The file, exactly one: at most the tenant's `upload_max_bytes` (`413`), of a type
    /// (sniffed from its bytes, not the part's `Content-Type`) in its
    /// `upload_allowed_types` (`415`). The part's file name is kept (its last path
    /// component, at most 255 characters).
    #[schemars(
        with = "String",
        required,
        extend("format" = "binary", "contentEncoding" = "binary", "contentMediaType" = "application/octet-stream")
    )]
    file: Option<Stored>,
    /// A caption, the message's text (without one, the text is the file's name): at
    /// most 16,000 characters.
    #[schemars(default, skip_serializing_if = "Option::is_none", with = "String", example = &"The receipt")]
    content: Option<String>,
    /// A message of the same chat this one answers.
    #[schemars(rename = "replyToMessageId", default, skip_serializing_if = "Option::is_none", with = "MessageId")]
    reply_to: Option<String>,
}

/// A file written (not yet completed) to the store.
struct Stored {
    writer: Writer,
    attachment: Attachment,
}

/// The upload handler.
pub(crate) async fn upload(req: HttpRequest, payload: web::Payload, state: web::Data<Core>) -> ChatResult {
    Ok(receive(req, payload, state).await?)
}

async fn receive(req: HttpRequest, payload: web::Payload, state: web::Data<Core>) -> Result<HttpResponse, ApiError> {
    let mut cx = Cx::new(req.clone(), state.clone(), dev::Payload::None);
    let ChatCaller { actor, .. } = ChatCaller::read(&mut cx).await?;
    let InChat(room_id) = InChat::read(&mut cx).await?;
    state.bus.request(&GetRoom { actor: actor.clone(), room_id: room_id.clone() }).await?;
    let (tenant, _) = state.secrets.get(&state.bus, &actor.tenant_id).await?;
    let settings = tenant.settings;

    let attachments = &state.attachments;
    let limit = settings.upload_max_bytes;
    let declared = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit.saturating_add(FORM_OVERHEAD)) {
        return Err(too_large(limit));
    }
    let body = Body::new(payload);
    let mut form = Form::default();
    let result = read_form(
        Multipart::new(req.headers(), body.stream()),
        &attachments.store,
        &actor,
        &room_id,
        limit,
        &settings.upload_allowed_types,
        &mut form,
    )
    .await;
    if let Err(e) = result {
        if let Some(stored) = form.file.take() {
            stored.writer.abort().await;
        }
        // Let a client still sending its upload read the answer.
        body.drain(limit.saturating_add(FORM_OVERHEAD)).await;
        return Err(e);
    }
    let cmd = match command(actor, room_id, &mut form) {
        Ok(cmd) => cmd,
        Err(e) => {
            if let Some(stored) = form.file.take() {
                stored.writer.abort().await;
            }
            return Err(e);
        }
    };
    let Some(Stored { writer, attachment }) = form.file.take() else {
        return Err(ApiError::validation("file", "file is required"));
    };
    writer.finish().await.map_err(|e| {
        tracing::error!(error = format!("{e:#}"), "storing an attachment failed");
        ApiError::unavailable("The attachment store is not available")
    })?;
    match state.sends.send(cmd).await {
        Ok(sent) => Ok(ok(StatusCode::CREATED, OneMessage { message: render::message(&sent.message, &state.links()) })),
        Err(e) => {
            if let Err(d) = attachments.store.delete(&attachment.key).await {
                tracing::warn!(error = format!("{d:#}"), key = %attachment.key, "an unsent attachment was left in the store");
            }
            Err(e)
        }
    }
}

/// The send the form asks for.
fn command(actor: Actor, room_id: RoomId, form: &mut Form) -> Result<SendMessage, ApiError> {
    let stored = form.file.as_ref().ok_or_else(|| ApiError::validation("file", "file is required"))?;
    let reply_to = form
        .reply_to
        .take()
        .filter(|r| !r.trim().is_empty())
        .map(|r| {
            MessageId::parse(r.trim())
                .map_err(|e| ApiError::validation("replyToMessageId", format!("Invalid replyToMessageId: {e}")))
        })
        .transpose()?;
    // Without a caption the message's text is the file's name, so that dialects that
    // show only text still show something meaningful.
    let caption = form.content.take().filter(|c| !c.trim().is_empty());
    let content = MessageContent::parse(caption.unwrap_or_else(|| stored.attachment.filename.clone()))?;
    Ok(SendMessage {
        reply_to,
        attachments: vec![stored.attachment.clone()],
        ..SendMessage::text(actor, room_id, content)
    })
}

/// Reads every field of the form; the file goes to the store as it arrives.
async fn read_form(
    mut multipart: Multipart,
    store: &Store,
    actor: &Actor,
    room_id: &RoomId,
    limit: u64,
    allowed: &[String],
    form: &mut Form,
) -> Result<(), ApiError> {
    while let Some(field) = multipart.next().await {
        let field = field.map_err(malformed)?;
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "file" => {
                if form.file.is_some() {
                    return Err(ApiError::validation("file", "Only one file may be sent"));
                }
                let filename = clean_filename(field.content_disposition().and_then(|d| d.get_filename()));
                read_file(field, store, actor, room_id, filename, limit, allowed, form).await?;
            }
            "content" => form.content = Some(read_text(field, "content", MAX_CAPTION_BYTES).await?),
            "replyToMessageId" => form.reply_to = Some(read_text(field, "replyToMessageId", MAX_REPLY_BYTES).await?),
            other => {
                return Err(ApiError::validation(
                    other,
                    format!("Unexpected form field {other:?}: send file, content and replyToMessageId"),
                ));
            }
        }
    }
    Ok(())
}

/// A short text field.
async fn read_text(mut field: Field, name: &str, max: usize) -> Result<String, ApiError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(malformed)?;
        if bytes.len() + chunk.len() > max {
            return Err(ApiError::validation(name, format!("{name} must be at most {max} bytes")));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| ApiError::validation(name, format!("{name} must be UTF-8 text")))
}

/// Streams the file into the store, typed by its first bytes.
#[allow(clippy::too_many_arguments)]
async fn read_file(
    mut field: Field,
    store: &Store,
    actor: &Actor,
    room_id: &RoomId,
    filename: String,
    limit: u64,
    allowed: &[String],
    form: &mut Form,
) -> Result<(), ApiError> {
    // The head: enough bytes to decide the type (or the whole file).
    let mut head = Vec::new();
    let mut rest: Option<Bytes> = None;
    // A field must not be polled again once it has ended.
    let mut ended = false;
    while head.len() < sniff::HEAD {
        match field.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(malformed)?;
                let take = chunk.len().min(sniff::HEAD - head.len());
                head.extend_from_slice(&chunk[..take]);
                if take < chunk.len() {
                    rest = Some(chunk.slice(take..));
                }
            }
            None => {
                ended = true;
                break;
            }
        }
    }
    if head.is_empty() {
        return Err(ApiError::validation("file", "The file is empty"));
    }
    if head.len() as u64 > limit {
        return Err(too_large(limit));
    }
    let mime = sniff::refine(sniff::sniff(&head), &filename);
    if !sniff::allowed(mime, allowed) {
        return Err(unsupported(mime));
    }
    let mut text = (mime == sniff::TEXT || mime == sniff::CSV).then(TextCheck::default);
    if let Some(check) = &mut text {
        check.feed(&head);
    }
    let key = Store::new_key(&actor.tenant_id, room_id);
    let writer = store.writer(&key).map_err(|e| {
        tracing::error!(error = format!("{e:#}"), "opening an attachment for writing failed");
        ApiError::internal()
    })?;
    let attachment = Attachment { key, filename, mime_type: mime.to_owned(), size: 0 };
    let stored = form.file.insert(Stored { writer, attachment });
    let unavailable = |e: anyhow::Error| {
        tracing::error!(error = format!("{e:#}"), "writing an attachment failed");
        ApiError::unavailable("The attachment store is not available")
    };
    stored.writer.put(Bytes::from(head)).await.map_err(unavailable)?;
    loop {
        let chunk = match rest.take() {
            Some(chunk) => chunk,
            None if ended => break,
            None => match field.next().await {
                Some(chunk) => chunk.map_err(malformed)?,
                None => break,
            },
        };
        if stored.writer.written() + chunk.len() as u64 > limit {
            return Err(too_large(limit));
        }
        if let Some(check) = &mut text
            && !check.feed(&chunk)
        {
            return Err(unsupported(sniff::BINARY));
        }
        stored.writer.put(chunk).await.map_err(unavailable)?;
    }
    if text.as_ref().is_some_and(|c| !c.finish()) {
        return Err(unsupported(sniff::BINARY));
    }
    stored.attachment.size = stored.writer.written();
    Ok(())
}

/// The request body, shared between the multipart parser (which must own a stream)
/// and [`Body::drain`], and counted as it is read.
#[derive(Clone)]
struct Body(Rc<RefCell<(web::Payload, u64)>>);

impl Body {
    fn new(payload: web::Payload) -> Self {
        Self(Rc::new(RefCell::new((payload, 0))))
    }

    fn next(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, PayloadError>>> {
        let mut body = self.0.borrow_mut();
        let polled = body.0.poll_next_unpin(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &polled {
            body.1 += chunk.len() as u64;
        }
        polled
    }

    fn stream(&self) -> impl Stream<Item = Result<Bytes, PayloadError>> + 'static {
        let body = self.clone();
        futures_util::stream::poll_fn(move |cx| body.next(cx))
    }

    /// Reads and discards the rest of the body, while no more than `cap` bytes were
    /// read in all.
    async fn drain(&self, cap: u64) {
        while self.0.borrow().1 <= cap {
            match futures_util::future::poll_fn(|cx| self.next(cx)).await {
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_paths_and_control_characters() {
        assert_eq!(clean_filename(Some("C:\\Users\\me\\photo.png")), "photo.png");
        assert_eq!(clean_filename(Some("../../etc/passwd")), "passwd");
        assert_eq!(clean_filename(Some("a\r\nb\0.txt")), "ab.txt");
        assert_eq!(clean_filename(Some("  ")), "file");
        assert_eq!(clean_filename(Some("..")), "file");
        assert_eq!(clean_filename(None), "file");
        assert_eq!(clean_filename(Some("ünï \"q\".pdf")), "ünï \"q\".pdf");
        assert_eq!(clean_filename(Some(&"x".repeat(300))).chars().count(), 255);
    }
}
