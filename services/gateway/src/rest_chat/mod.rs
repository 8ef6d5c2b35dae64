//! The `rest-chat.md` dialect under `/api/chat`: an Express-style REST API (Bearer
//! user tokens, `{success, data}` envelopes, camelCase JSON) over the same rooms,
//! members and messages as every other dialect. Chats are rooms (`_id` is the room
//! id), messages are the rooms' messages; whatever is done here publishes the same bus
//! events as the other dialects, so `/ws`, `/conversations` and `/rooms` clients see it.
//!
//! - [`extract`]: the caller (Bearer token, or `X-API-Key` + `X-User-Id`) and path
//!   segments, read in order, failing in this dialect's error shape ([`error`]).
//! - [`render`]: a chat and a message as JSON (also for the Socket.IO dialect).
//! - [`chats`], [`participants`], [`messages`]: one file per resource.
//!
//! The reference is `docs/rest-chat.md`.

mod chats;
mod error;
mod extract;
mod messages;
mod participants;
pub(crate) mod render;

use actix_web::web;

/// A resource whose other methods answer like an unknown path (this dialect's `404`).
fn resource(path: &str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(error::no_route))
}

/// Mounts `/api/chat` (static paths before the `:id` patterns they would match).
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/chat")
            .service(
                web::resource(["", "/"])
                    .default_service(web::to(error::no_route))
                    .route(web::post().to(chats::create))
                    .route(web::get().to(chats::list)),
            )
            .service(resource("/purchase-request").route(web::post().to(chats::purchase_request)))
            .service(resource("/context").route(web::post().to(chats::context)))
            .service(resource("/support").route(web::post().to(chats::support)))
            .service(resource("/stats").route(web::get().to(chats::stats)))
            .service(resource("/{id}/info").route(web::get().to(chats::info)))
            .service(resource("/{id}/archive").route(web::patch().to(chats::archive)))
            .service(resource("/{id}/participants").route(web::post().to(participants::add)))
            .service(resource("/{id}/participants/{participantId}").route(web::delete().to(participants::remove)))
            .service(
                resource("/{id}/messages").route(web::get().to(messages::list)).route(web::post().to(messages::send)),
            )
            .service(resource("/{id}/messages/read").route(web::patch().to(messages::read)))
            .service(
                resource("/{id}/messages/{messageId}")
                    .route(web::put().to(messages::edit))
                    .route(web::delete().to(messages::delete)),
            )
            .default_service(web::to(error::no_route)),
    );
}
