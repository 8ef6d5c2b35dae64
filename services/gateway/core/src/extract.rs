//! What a REST handler takes: one extractor, [`Rest<P>`], that reads the parts `P` of
//! a request **in order** and fails with the first part's documented error.
//!
//! Order matters and actix's own tuple extraction does not keep it (it polls every
//! extractor at once, so a bad path segment would answer before the pending key
//! check). Here the caller is admitted first (a bad key is `401` before anything about
//! the request is looked at), then each part is read in the order the handler lists
//! it: `Rest<(Acting, InRoom, Body<SendBody>)>` is the acting user (`X-User-Id`), the
//! `{room_id}` segment, then the JSON body — the same precedence the API has always had.
//!
//! Parts: the callers (`crate::caller`), path segments ([`InRoom`], [`InMessage`],
//! [`InUser`], [`InTenant`], [`Topic`], [`IdSegment`]), the query ([`Page`], [`QueryString`]), the
//! body ([`Body`], [`MaybeBody`]), and tuples of parts; and the parsers of ids in
//! paths and bodies ([`room_id`], [`user_id`], [`tenant_id`]) and of a page ([`page`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev, web};
use chat_domain::ApiError;
use chat_domain::ids::{MessageId, RoomId, TenantId, UserId};
use chat_domain::model::Actor;
use chat_domain::proto::store::TenantAuth;
use serde::de::DeserializeOwned;

use crate::body::Query;
use crate::error::HttpError;
use crate::state::Core;

/// An authenticated, rate-limited tenant request (read by `crate::caller`; kept here,
/// in the request being read, for the parts after the one that admitted it).
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: TenantAuth,
    pub(crate) user: Result<UserId, ApiError>,
}

impl Caller {
    /// The tenant and user this request acts for; `X-User-Id` must be present and valid.
    pub fn actor(&self) -> Result<Actor, ApiError> {
        let user_id = self.user.clone()?;
        Ok(Actor { tenant_id: self.tenant.tenant_id.clone(), user_id })
    }
}

/// What parts are read from: the request, its (not yet read) body, and the caller
/// once admitted.
pub struct Cx {
    pub req: HttpRequest,
    pub state: web::Data<Core>,
    payload: Option<dev::Payload>,
    /// The admitted caller, kept for the parts after the one that admitted it.
    pub caller: Option<Caller>,
    /// The path's segments, decoded.
    segments: Option<HashMap<String, String>>,
}

impl Cx {
    /// A request to read parts of (other dialects' extractors build one too).
    pub fn new(req: HttpRequest, state: web::Data<Core>, payload: dev::Payload) -> Self {
        Cx { req, state, payload: Some(payload), caller: None, segments: None }
    }

    /// A path segment, percent-decoded (as `web::Path` decodes it).
    pub fn segment(&mut self, name: &str) -> Result<String, ApiError> {
        if self.segments.is_none() {
            self.segments = Some(decoded_segments(&self.req));
        }
        self.segments
            .as_ref()
            .and_then(|s| s.get(name).cloned())
            .ok_or_else(|| ApiError::validation(name, format!("{name} is required")))
    }

    /// The body, read whole (once; later reads get nothing).
    pub async fn body(&mut self) -> Result<web::Bytes, ApiError> {
        let payload = self.payload.take().unwrap_or(dev::Payload::None);
        crate::body::read(&self.req, payload, self.state.max_body_bytes).await
    }

    /// A header's value, trimmed; `None` when absent or empty.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|v| !v.is_empty())
    }
}

/// The path's segments by name, percent-decoded as `web::Path` decodes them (the
/// router leaves `%2F`, `%2B` and `%25` encoded).
fn decoded_segments(req: &HttpRequest) -> HashMap<String, String> {
    let values = web::Path::<Vec<String>>::extract(req).into_inner().map(web::Path::into_inner).unwrap_or_default();
    req.match_info().iter().map(|(name, _)| name.to_owned()).zip(values).collect()
}

/// One part of a request.
pub trait Part: Sized {
    fn read(cx: &mut Cx) -> impl Future<Output = Result<Self, ApiError>>;
}

/// Reads the parts `P` (usually a tuple, named by the pattern it is bound to).
pub async fn parts<P: Part>(cx: &mut Cx) -> Result<P, ApiError> {
    P::read(cx).await
}

/// A request read part by part, in order (see the module documentation).
pub struct Rest<P>(pub P);

impl<P: Part + 'static> FromRequest for Rest<P> {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, HttpError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut dev::Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let state = req.app_data::<web::Data<Core>>().cloned().ok_or_else(ApiError::internal)?;
            let mut cx = Cx::new(req, state, payload);
            Ok(Rest(P::read(&mut cx).await?))
        })
    }
}

macro_rules! tuple_part {
    ($($t:ident),+) => {
        impl<$($t: Part),+> Part for ($($t,)+) {
            async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
                Ok(($($t::read(cx).await?,)+))
            }
        }
    };
}
tuple_part!(A);
tuple_part!(A, B);
tuple_part!(A, B, C);
tuple_part!(A, B, C, D);

/// The `{room_id}` segment.
pub struct InRoom(pub RoomId);

impl Part for InRoom {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        Ok(InRoom(room_id(&cx.segment("room_id")?)?))
    }
}

/// The `{message_id}` segment.
pub struct InMessage(pub MessageId);

impl Part for InMessage {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let raw = cx.segment("message_id")?;
        MessageId::parse(raw.as_str())
            .map(InMessage)
            .map_err(|e| ApiError::validation("message_id", format!("Invalid message id: {e}")))
    }
}

/// The `{emoji}` segment (percent-encoded in the path): a Unicode emoji sequence or
/// `:custom_name:` (`chat_domain::emoji`).
pub struct InEmoji(pub chat_domain::emoji::Emoji);

impl Part for InEmoji {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        chat_domain::emoji::Emoji::parse(cx.segment("emoji")?).map(InEmoji)
    }
}

/// The `{user_id}` segment.
pub struct InUser(pub UserId);

impl Part for InUser {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        Ok(InUser(user_id("user_id", &cx.segment("user_id")?)?))
    }
}

/// The `{tenant_id}` segment.
pub struct InTenant(pub TenantId);

impl Part for InTenant {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        Ok(InTenant(tenant_id(&cx.segment("tenant_id")?)?))
    }
}

/// The `{topic}` segment.
pub struct Topic(pub String);

impl Part for Topic {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        cx.segment("topic").map(Topic)
    }
}

/// The `{id}` segment (a dead letter's id).
pub struct IdSegment(pub String);

impl Part for IdSegment {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        cx.segment("id").map(IdSegment)
    }
}

/// The query string.
pub struct QueryString(pub Query);

impl Part for QueryString {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        Query::parse(&cx.req).map(QueryString)
    }
}

/// `limit` (default 50, max 100) and `offset` (default 0) of list endpoints.
#[derive(schemars::JsonSchema)]
pub struct Page {
    /// Most items returned.
    #[schemars(default = "default_limit", range(min = 1, max = 100))]
    pub limit: u32,
    /// Items skipped.
    #[schemars(default, range(max = u32::MAX))]
    pub offset: u32,
}

impl Part for Page {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let (limit, offset) = page(&Query::parse(&cx.req)?)?;
        Ok(Page { limit, offset })
    }
}

/// A JSON object body, as the endpoint's typed request `T`.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> Part for Body<T> {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let bytes = cx.body().await?;
        crate::body::object(&bytes).map(Body)
    }
}

/// A body that may be empty; when present it must be a JSON object.
pub struct MaybeBody<T>(pub Option<T>);

impl<T: DeserializeOwned> Part for MaybeBody<T> {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let bytes = cx.body().await?;
        if crate::body::is_blank(&bytes) {
            return Ok(MaybeBody(None));
        }
        crate::body::object(&bytes).map(|t| MaybeBody(Some(t)))
    }
}

/// The page size of list endpoints when `limit` is not given.
pub fn default_limit() -> u32 {
    50
}

/// Parses a `{room_id}` path segment.
pub fn room_id(raw: &str) -> Result<RoomId, ApiError> {
    RoomId::parse(raw).map_err(|e| ApiError::validation("room_id", format!("Invalid room id: {e}")))
}

/// Parses a `{user_id}` path segment or body field.
pub fn user_id(field: &str, raw: &str) -> Result<UserId, ApiError> {
    UserId::parse(raw).map_err(|e| ApiError::validation(field, format!("Invalid user id {raw:?}: {e}")))
}

/// Parses a `{tenant_id}` path segment or body field.
pub fn tenant_id(raw: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(raw).map_err(|e| ApiError::validation("tenant_id", format!("Invalid tenant id: {e}")))
}

/// `limit` (default 50, max 100) and `offset` (default 0) for list endpoints.
pub fn page(q: &Query) -> Result<(u32, u32), ApiError> {
    let limit = q.int("limit", 1, 100)?.map_or(default_limit(), |n| n as u32);
    let offset = q.int("offset", 0, i64::from(u32::MAX))?.unwrap_or(0) as u32;
    Ok((limit, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn segments_are_decoded_and_found_by_name() -> anyhow::Result<()> {
        let req = actix_web::test::TestRequest::default()
            .param("room_id", "r%2F1")
            .param("message_id", "m%201")
            .to_http_request();
        let names: Vec<String> = req.match_info().iter().map(|(k, _)| k.to_owned()).collect();
        let values = decoded_segments(&req);
        assert_eq!(names, vec!["room_id", "message_id"]);
        assert_eq!(values.get("room_id").map(String::as_str), Some("r/1"));
        assert_eq!(values.get("message_id").map(String::as_str), Some("m 1"));
        Ok(())
    }
}
