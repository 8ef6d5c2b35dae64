//! What `/api/chat` handlers take: [`ChatRest<P>`], the parts `P` of a request read in
//! order (as `rest::extract::Rest` reads them) but failing in this dialect's error
//! shape, and the dialect's parts: the caller ([`ChatCaller`]) and the path segments
//! `:id`, `:messageId`, `:participantId`.

use std::future::Future;
use std::pin::Pin;

use actix_web::{FromRequest, HttpRequest, dev, web};
use chat_domain::ApiError;
use chat_domain::ids::{MessageId, RoomId, UserId};
use chat_domain::model::Actor;

use super::error::ChatError;
use gateway_core::Core;
use gateway_core::caller::{API_KEY, USER_ID, header_user};
use gateway_core::extract::{Cx, Part};

/// A request read part by part, in order; errors in the chat dialect's shape.
pub(crate) struct ChatRest<P>(pub P);

impl<P: Part + 'static> FromRequest for ChatRest<P> {
    type Error = ChatError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ChatError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut dev::Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let state = req.app_data::<web::Data<Core>>().cloned().ok_or_else(ApiError::internal)?;
            let mut cx = Cx::new(req, state, payload);
            Ok(ChatRest(P::read(&mut cx).await?))
        })
    }
}

/// Who calls `/api/chat`: `Authorization: Bearer <user token>` (the token names the
/// user), or the tenant's server with `X-API-Key` and `X-User-Id`. Counted against
/// the tenant's rate limit.
#[derive(Debug, Clone)]
pub(crate) struct ChatCaller {
    pub actor: Actor,
    /// Whether the tenant's API key made the call (it may post system messages).
    pub with_api_key: bool,
}

/// The credential of `Authorization: Bearer <credential>`.
fn bearer(cx: &Cx) -> Option<Result<&str, ApiError>> {
    let value = cx.header("Authorization")?;
    let (scheme, credential) = value.split_once(' ').unwrap_or((value, ""));
    let credential = credential.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || credential.is_empty() {
        return Some(Err(ApiError::authentication("Authorization must be \"Bearer <token>\"")));
    }
    Some(Ok(credential))
}

impl Part for ChatCaller {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let (credential, from_bearer) = match bearer(cx) {
            Some(credential) => (credential?.to_owned(), true),
            None => match cx.header(API_KEY) {
                Some(key) => (key.to_owned(), false),
                None => {
                    return Err(ApiError::authentication(
                        "Authentication required: Authorization: Bearer <token> (or X-API-Key with X-User-Id)",
                    ));
                }
            },
        };
        let identified = gateway_core::caller::guarded(cx, gateway_core::admit::identify(&cx.state, &credential));
        let identified = identified.await.map_err(|e| {
            if from_bearer && e.code == chat_domain::ErrorCode::AuthenticationError {
                ApiError::authentication(format!("Invalid or expired token: {}", e.message))
            } else {
                e
            }
        })?;
        gateway_core::caller::count(cx, &identified.tenant).await?;
        let named = header_user(cx).transpose()?;
        let (user_id, with_api_key) = match identified.token_user {
            Some(user) => {
                if named.as_ref().is_some_and(|n| n != &user) {
                    return Err(ApiError::forbidden(format!("This token acts for {user} only")));
                }
                (user, false)
            }
            None => (named.ok_or_else(|| ApiError::validation(USER_ID, "X-User-Id header is required"))?, true),
        };
        Ok(ChatCaller { actor: Actor { tenant_id: identified.tenant.tenant_id.clone(), user_id }, with_api_key })
    }
}

/// The `:id` segment: a chat (room) id.
pub(crate) struct InChat(pub RoomId);

impl Part for InChat {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let raw = cx.segment("id")?;
        RoomId::parse(raw.as_str()).map(InChat).map_err(|e| ApiError::validation("id", format!("Invalid chat id: {e}")))
    }
}

/// The `:messageId` segment.
pub(crate) struct InChatMessage(pub MessageId);

impl Part for InChatMessage {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let raw = cx.segment("messageId")?;
        MessageId::parse(raw.as_str())
            .map(InChatMessage)
            .map_err(|e| ApiError::validation("messageId", format!("Invalid message id: {e}")))
    }
}

/// The `:participantId` segment.
pub(crate) struct InParticipant(pub UserId);

impl Part for InParticipant {
    async fn read(cx: &mut Cx) -> Result<Self, ApiError> {
        let raw = cx.segment("participantId")?;
        gateway_core::extract::user_id("participantId", &raw).map(InParticipant)
    }
}
