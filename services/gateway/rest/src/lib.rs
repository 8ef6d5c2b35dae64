//! The canonical REST API (`rest-rooms.md`), mounted at `/` and again under `/v1/`:
//! rooms, members, messages, read and delivered cursors, notifications, user tokens,
//! the user directory, the tenant's settings, `/health`, and the operator's `/admin`
//! routes. Errors are the core's default shape (`gateway_core::error`).
//!
//! One file per resource, each with its handlers and the routes that mount them (with
//! their documentation): `messages`, `cursors`, `rooms`, `users`, `health`, `tokens`,
//! `notify`, `admin`, `settings`, `search`, `sync`, `blocks`, `reactions` (and pins), `moderation`; `success`: the answer of an action with nothing else
//! to say. Every handler takes one `gateway_core::extract::Rest`
//! of the parts it reads, in order, and typed request structs convert into bus
//! commands with `TryFrom`.

mod admin;
mod blocks;
mod cursors;
mod erasure;
mod health;
mod messages;
mod moderation;
mod notify;
mod reactions;
mod rooms;
mod search;
mod settings;
mod success;
mod sync;
mod tokens;
mod users;

use gateway_core::Dialect;
use gateway_core::routes::Mount;

/// `rest-rooms.md`: its handlers need nothing beyond the core.
#[derive(Debug, Default)]
pub struct RestRooms;

impl Dialect for RestRooms {
    fn name(&self) -> &'static str {
        "rest-rooms"
    }

    fn mount(&self, m: &mut Mount) {
        routes(m);
    }

    fn mount_v1(&self, m: &mut Mount) {
        routes(m);
    }
}

/// Adds every route of the REST API to a mount (`/` and `/v1`), each with its
/// documentation. One resource per path (every method of a path matched by one
/// pattern), the busiest first: routes are tried in order, and each dynamic pattern
/// costs a regex match.
fn routes(m: &mut Mount) {
    messages::routes(m);
    cursors::routes(m);
    rooms::routes(m);
    users::routes(m);
    health::routes(m);
    tokens::routes(m);
    notify::routes(m);
    admin::routes(m);
    erasure::routes(m);
    settings::routes(m);
    search::routes(m);
    sync::routes(m);
    blocks::routes(m);
    reactions::routes(m);
    moderation::routes(m);
}
