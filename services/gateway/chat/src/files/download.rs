//! `GET /api/chat/{id}/files/{token}`: an attachment, streamed from the store.
//!
//! Three checks, in this order, each with its own answer:
//! 1. the reader authenticates (`Authorization: Bearer`, or `?token=` so that an
//!    `<img src>` can carry it, or the API key with `X-User-Id`): `401` otherwise;
//! 2. the link's signature matches and it has not expired: `403` otherwise;
//! 3. the reader is a participant of the link's chat, in its tenant: `404` otherwise
//!    (a file of a chat one cannot see does not exist, as everywhere else).
//!
//! The response carries the type sniffed at upload, `Content-Disposition` (`inline`
//! only for types a browser shows without running anything; the file name both as an
//! ASCII fallback and as RFC 8187 UTF-8), `X-Content-Type-Options: nosniff` and a
//! sandboxing `Content-Security-Policy`, so that even a file a browser might take for
//! a page cannot run script on the gateway's origin.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, dev, web};
use chat_domain::model::Actor;
use chat_domain::proto::store::GetRoom;
use chat_domain::{ApiError, ErrorCode};
use futures_util::TryStreamExt as _;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::error::ChatResult;
use crate::extract::{ChatCaller, InChat};
use gateway_core::Core;
use gateway_core::attachments::links::LinkError;
use gateway_core::attachments::sniff;
use gateway_core::caller::API_KEY;
use gateway_core::extract::{Cx, Part as _};

/// RFC 8187 `attr-char`s are left as they are; everything else is percent-encoded.
const ATTR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// The `Content-Disposition` value for a file named `filename` of type `mime`.
pub fn content_disposition(mime: &str, filename: &str) -> String {
    let kind = if sniff::inline(mime) { "inline" } else { "attachment" };
    // The fallback for old clients: printable ASCII without quotes or backslashes.
    let fallback: String = filename
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
        .collect();
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{}", utf8_percent_encode(filename, ATTR))
}

fn not_found() -> ApiError {
    ApiError::not_found("No such attachment")
}

/// The download handler.
pub(crate) async fn download(req: HttpRequest, state: web::Data<Core>) -> ChatResult {
    Ok(serve(req, state).await?)
}

/// The reader: `?token=` when no `Authorization` or `X-API-Key` header is sent (an
/// `<img src>`), else the chat dialect's caller.
async fn reader(cx: &mut Cx) -> Result<Actor, ApiError> {
    let headers = cx.req.headers();
    let from_query = !headers.contains_key(header::AUTHORIZATION) && !headers.contains_key(API_KEY);
    match query_token(&cx.req).filter(|t| from_query && !t.is_empty()) {
        Some(token) => {
            let bad = || ApiError::authentication("Invalid or expired token");
            let identified = gateway_core::admit::identify(&cx.state, &token).await.map_err(|_| bad())?;
            let user_id = identified.token_user.ok_or_else(bad)?;
            gateway_core::caller::count(cx, &identified.tenant).await?;
            Ok(Actor { tenant_id: identified.tenant.tenant_id, user_id })
        }
        None => Ok(ChatCaller::read(cx).await?.actor),
    }
}

async fn serve(req: HttpRequest, state: web::Data<Core>) -> Result<HttpResponse, ApiError> {
    let mut cx = Cx::new(req, state.clone(), dev::Payload::None);
    let actor = reader(&mut cx).await?;
    let InChat(room_id) = InChat::read(&mut cx).await?;
    let token = cx.segment("token")?;
    let now = chrono::Utc::now().timestamp();
    let claims = state.attachments.links.verify(&token, now).map_err(|e| match e {
        LinkError::Expired => ApiError::forbidden("This link has expired; fetch the message again for a fresh one"),
        LinkError::BadSignature => ApiError::forbidden("This link is not valid"),
    })?;
    // The chat in the path is not signed; it must be the one the link is for.
    if claims.room != room_id {
        return Err(ApiError::forbidden("This link is not valid"));
    }
    // Keys start with their tenant and chat: another tenant's file does not exist here.
    if !claims.key.starts_with(&format!("{}/{room_id}/", actor.tenant_id)) {
        return Err(not_found());
    }
    match state.bus.request(&GetRoom { actor, room_id }).await {
        Ok(_) => {}
        Err(e) if matches!(e.code, ErrorCode::Forbidden | ErrorCode::NotFound) => return Err(not_found()),
        Err(e) => return Err(e),
    }
    let object = state.attachments.store.read(&claims.key).await.map_err(|e| {
        tracing::error!(error = format!("{e:#}"), "reading an attachment failed");
        ApiError::unavailable("The attachment store is not available")
    })?;
    let Some((size, bytes)) = object else { return Err(not_found()) };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, sniff::content_type(&claims.mime_type)))
        .insert_header((header::CONTENT_DISPOSITION, content_disposition(&claims.mime_type, &claims.filename)))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CONTENT_SECURITY_POLICY, "default-src 'none'; sandbox"))
        .insert_header((header::CACHE_CONTROL, "private, max-age=300"))
        .no_chunking(size)
        .streaming(bytes.map_err(|e| {
            tracing::warn!(error = format!("{e:#}"), "an attachment stopped streaming");
            actix_web::error::ErrorInternalServerError("attachment stream failed")
        })))
}

/// The `?token=` query parameter, percent-decoded.
fn query_token(req: &HttpRequest) -> Option<String> {
    req.query_string().split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == "token").then(|| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispositions_are_safe_for_any_name() {
        assert_eq!(
            content_disposition("image/png", "cat.png"),
            "inline; filename=\"cat.png\"; filename*=UTF-8''cat.png"
        );
        assert_eq!(
            content_disposition("application/pdf", "ré\"sumé\\ 1.pdf"),
            "attachment; filename=\"r__sum__ 1.pdf\"; filename*=UTF-8''r%C3%A9%22sum%C3%A9%5C%201.pdf"
        );
        assert!(content_disposition("text/html", "x.html").starts_with("attachment;"));
    }
}
