//! The presence state in Redis. Every key starts with `<p>:pr:` (`<p>` = the bus
//! prefix); times are milliseconds since the Unix epoch; `\x1f` separates the parts
//! of a member (no id can contain it).
//!
//! Per room (`<t>:<r>` = tenant and room id):
//! - `conns:<t>:<r>`: sorted set of sockets `user\x1fconn`, scored by the moment the
//!   socket closed, `+inf` while it is open. A closed socket stays for the leave
//!   grace, during which its user still counts as online.
//! - `gws:<t>:<r>`: hash `user\x1fconn` → gateway, for the sockets still open (so a
//!   disconnect can drop the socket from its gateway's index).
//! - `users:<t>:<r>`: hash user → `open\x1ffrom\x1flast`: how many of their sockets
//!   are open, when their current interval began, when their last socket closed.
//!   A user is in it from their first socket until the grace after their last one.
//! - `hist:<t>:<r>`: sorted set of intervals `user\x1ffrom`, scored by when the
//!   interval ended (`+inf` while it is open). Intervals that ended more than the
//!   history time ago are pruned whenever the set is written; once none is open the
//!   key expires after the history time, so idle rooms clean themselves.
//! - `typing:<t>:<r>`: sorted set of users scored by when their typing expires.
//! - `names:<t>:<r>`: hash user → display name, for announcements.
//!
//! Across rooms:
//! - `tenant:<t>`: sorted set of `user\x1froom\x1fconn`, scored as in `conns`, for
//!   "who is online anywhere in the tenant".
//! - `leases`: sorted set of gateways scored by when their lease runs out.
//! - `gw:<gw>`: set of the gateway's open sockets, `tenant\x1froom\x1fuser\x1fconn`;
//!   when its lease runs out they are all closed at that moment.
//! - `due`: sorted set of rooms `tenant\x1froom`, scored by the earliest moment
//!   something in the room is due (a closing socket's grace end, a typing expiry).
//!   The sweeper asks only for what is due now, so its idle cost does not grow with
//!   rooms or sockets.
//! - `since`: when history began to be recorded (set once); a span that starts
//!   earlier is answered as incomplete.
//!
//! Every change is one Lua script (`lua.rs`).
//!
//! - `handle`: [`State`], the handle on these keys, with [`Timing`] and [`now_ms`];
//!   how keys and members are spelled.
//! - `sockets`: connect, disconnect, who is online in a room or a tenant.
//! - `leases`: gateway leases, and closing the sockets of one that ran out.
//! - `typing`: typing indicators with expiry.
//! - `sweep`: the rooms with something due, and removing it.
//! - `history`: when users were online, answered per span.
//! - `erase`: removing a tenant's or one user's presence.
//!
//! Each of them is an `impl State` that builds its keys with `handle`; none imports
//! another, nor this module.

mod erase;
mod handle;
mod history;
mod leases;
mod sockets;
mod sweep;
mod typing;

pub use handle::{DEFAULT_BIG_ROOM, State, Timing, now_ms};
pub use sockets::Announced;

#[cfg(test)]
mod tests;
