//! One room's fan-out task, alive while this gateway has a socket in the room: it
//! decodes each event of the room's subscription once, puts messages in `seq` order
//! (filling a lasting gap from message-store, as a service rather than as any user),
//! renders each event once per dialect and offers it to every socket.
//!
//! Arrivals and departures (`presence.joined`/`presence.left`) are held for the
//! room's presence window (`WS_PRESENCE_WINDOW_MS`) and coalesced: a user's arrival and
//! departure within it cancel, and a burst of them reaches each socket as one run of
//! frames at the window's end. A socket is told only the changes that arrived after it
//! registered (its greeting counted the earlier ones), net: an arrival and departure it
//! was there for both cancel. Any other event of the room first sends what is held, so
//! the room's events keep their order. (A big room's are not announced at all:
//! presence counts them instead.)

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chat_bus::Bus;
use chat_domain::ids::{RoomId, TenantId, UserId};
use chat_domain::model::Message;
use chat_domain::proto::events::{RoomEvent, RoomEventBody};
use chat_domain::proto::store::RoomMessages;
use futures_util::StreamExt as _;
use tokio::task::JoinHandle;

use crate::fanout::order::{GAP_WAIT, Reorder};
use crate::fanout::sockets::{RoomShared, offer};
use crate::session::codec::Close;

/// Most messages read per gap fill.
const GAP_FILL: u32 = 500;

/// The longest wait between gap fills while message-store does not answer.
const GAP_RETRY_MAX: Duration = Duration::from_secs(5);

/// Most presence changes held in a window; past it they are sent at once.
const MAX_HELD: usize = 10_000;

/// One user's changes within the window.
struct UserChanges {
    /// The latest change (arrivals and departures alternate).
    last: RoomEvent,
    /// For each change, in order, the first socket id not yet registered when it
    /// arrived: a socket sees the changes whose mark is above its id.
    marks: Vec<u64>,
}

impl UserChanges {
    /// Whether socket `id` is to be told: it was there for an odd number of the
    /// changes (an arrival and a departure it both was there for cancel; a socket that
    /// came later was greeted with the state after the earlier ones).
    fn tells(&self, id: u64) -> bool {
        self.marks.iter().filter(|m| id < **m).count() % 2 == 1
    }
}

/// Arrivals and departures held for the presence window, coalesced per user.
#[derive(Default)]
struct Held {
    /// Each user's changes, in the order of their first change.
    users: Vec<UserChanges>,
    /// The user's place in `users`.
    by_user: HashMap<UserId, usize>,
    /// Changes held.
    count: usize,
    /// When the window ends (set by its first change).
    until: Option<tokio::time::Instant>,
}

impl Held {
    /// Holds a presence change that arrived when `before` was the next socket id. A
    /// change that undoes the user's previous one (an arrival then a departure, or the
    /// reverse) cancels it for the sockets that were there for both; the same change
    /// again replaces the previous one.
    fn hold(&mut self, user: UserId, event: RoomEvent, before: u64, window: Duration) {
        self.count += 1;
        self.until.get_or_insert_with(|| tokio::time::Instant::now() + window);
        if let Some(i) = self.by_user.get(&user).copied()
            && let Some(changes) = self.users.get_mut(i)
        {
            let undoes = matches!(
                (&changes.last.body, &event.body),
                (RoomEventBody::PresenceJoined(_), RoomEventBody::PresenceLeft(_))
                    | (RoomEventBody::PresenceLeft(_), RoomEventBody::PresenceJoined(_))
            );
            if undoes {
                changes.marks.push(before);
                crate::metrics::PRESENCE_COALESCED.inc_by(2);
            }
            changes.last = event;
            return;
        }
        self.by_user.insert(user, self.users.len());
        self.users.push(UserChanges { last: event, marks: vec![before] });
    }

    /// Everything held, in order, ending the window.
    fn take(&mut self) -> Vec<UserChanges> {
        self.by_user.clear();
        self.until = None;
        self.count = 0;
        std::mem::take(&mut self.users)
    }
}

/// A room's fan-out.
pub struct RoomTask {
    bus: Bus,
    shared: Arc<RoomShared>,
    sub: async_nats::Subscriber,
    tenant: TenantId,
    room: RoomId,
    order: Reorder,
    /// Gap fills that failed in a row (message-store unreachable), for the backoff.
    fill_failures: u32,
    /// How long arrivals and departures are held and coalesced (zero: not held).
    window: Duration,
    held: Held,
    /// The hub's next socket id.
    next_socket: Arc<AtomicU64>,
}

impl RoomTask {
    /// Starts the task for a room whose newest message was `last_seq` when its first
    /// socket here joined.
    /// `window`: how long arrivals and departures are held and coalesced.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        bus: Bus,
        shared: Arc<RoomShared>,
        sub: async_nats::Subscriber,
        tenant: TenantId,
        room: RoomId,
        last_seq: i64,
        window: Duration,
        next_socket: Arc<AtomicU64>,
    ) -> JoinHandle<()> {
        let task = Self {
            bus,
            shared,
            sub,
            tenant,
            room,
            order: Reorder::after(last_seq),
            fill_failures: 0,
            window,
            held: Held::default(),
            next_socket,
        };
        tokio::spawn(task.run())
    }

    async fn run(mut self) {
        loop {
            let gap = self.order.gap_deadline();
            // The event's fan-out is a span of the trace that produced it (its
            // context travels in the NATS headers): a message's trace runs from the
            // send through message-store to every gateway that delivers it.
            let span = tokio::select! {
                msg = self.sub.next() => match msg {
                    Some(msg) => {
                        let span = tracing::info_span!("fanout", room = %self.room, kind = tracing::field::Empty);
                        chat_bus::trace::continue_from(msg.headers.as_ref(), &span);
                        let entered = span.enter();
                        match serde_json::from_slice::<RoomEvent>(&msg.payload) {
                            Ok(event) => {
                                span.record("kind", event.body.kind());
                                self.event(event);
                            }
                            Err(e) => tracing::warn!(error = %e, subject = %msg.subject, "undecodable room event"),
                        }
                        drop(entered);
                        Some(span)
                    }
                    None => break,
                },
                () = sleep_until(gap) => {
                    self.fill_gap().await;
                    None
                }
                () = sleep_until(self.held.until) => {
                    self.release();
                    None
                }
            };
            let _entered = span.as_ref().map(tracing::Span::enter);
            for m in self.order.ready() {
                self.deliver(&m);
            }
        }
    }

    /// Reads what a lasting gap is missing from message-store.
    async fn fill_gap(&mut self) {
        let cmd = RoomMessages {
            tenant_id: self.tenant.clone(),
            room_id: self.room.clone(),
            after_seq: self.order.delivered(),
            until_seq: None,
            limit: GAP_FILL,
        };
        match self.bus.request(&cmd).await {
            Ok(fetched) => {
                self.fill_failures = 0;
                self.order.filled(fetched);
            }
            Err(e) => {
                // The missing messages exist (their successors do); wait and ask again
                // rather than move past them.
                self.fill_failures = self.fill_failures.saturating_add(1);
                let retry_in = (GAP_WAIT * 2u32.saturating_pow(self.fill_failures.min(5))).min(GAP_RETRY_MAX);
                tracing::warn!(error = %e, room = %self.room, ?retry_in, "could not fill a seq gap; trying again");
                self.order.fill_failed(retry_in);
            }
        }
    }

    fn event(&mut self, event: RoomEvent) {
        match &event.body {
            RoomEventBody::PresenceJoined(p) | RoomEventBody::PresenceLeft(p) if !self.window.is_zero() => {
                let user = p.user_id.clone();
                let before = self.next_socket.load(Ordering::SeqCst);
                self.held.hold(user, event, before, self.window);
                if self.held.count >= MAX_HELD {
                    self.release();
                }
                return;
            }
            // Whatever else happens in the room comes after the changes held before it.
            _ => self.release(),
        }
        self.offer_event(event, None);
    }

    /// Sends the arrivals and departures held so far.
    fn release(&mut self) {
        if self.held.count == 0 {
            self.held.until = None;
            return;
        }
        for changes in self.held.take() {
            self.offer_event(changes.last.clone(), Some(&changes));
        }
    }

    /// Offers an event to the room's sockets (with `held`, only to those it tells: see
    /// [`UserChanges::tells`]).
    fn offer_event(&mut self, event: RoomEvent, held: Option<&UserChanges>) {
        // Typing and presence of a user a socket's user blocks do not reach it.
        let activity: Option<&UserId> = match &event.body {
            RoomEventBody::PresenceJoined(p) | RoomEventBody::PresenceLeft(p) => Some(&p.user_id),
            RoomEventBody::Typing(t) => Some(&t.user_id),
            _ => None,
        };
        // An edit or deletion of a message a socket's user hides (when the event carries
        // the message, as every current one does).
        let hidden: Option<&UserId> = match &event.body {
            RoomEventBody::MessageUpdated(u) => u.message.as_ref().map(|m| &m.sender_id),
            RoomEventBody::MessageDeleted(d) => d.message.as_ref().map(|m| &m.sender_id),
            _ => None,
        };
        let except: Option<&UserId> = match &event.body {
            RoomEventBody::MessageCreated(_) => None,
            RoomEventBody::PresenceJoined(p) | RoomEventBody::PresenceLeft(p) => Some(&p.user_id),
            RoomEventBody::Typing(t) => Some(&t.user_id),
            RoomEventBody::Delivered(c) => Some(&c.user_id),
            // A read reaches the reader's own sockets too: their other devices show
            // the chat read (multi-device read sync).
            RoomEventBody::Read(_) => None,
            RoomEventBody::MessageUpdated(_)
            | RoomEventBody::MessageDeleted(_)
            | RoomEventBody::MemberAdded(_)
            | RoomEventBody::ThreadUpdated(_)
            | RoomEventBody::Moderation(_) => None,
            // Reactions and pins reach every member, the actor's own sockets too (their
            // other devices show the change).
            RoomEventBody::ReactionAdded(_)
            | RoomEventBody::ReactionRemoved(_)
            | RoomEventBody::MessagePinned(_)
            | RoomEventBody::MessageUnpinned(_) => None,
            RoomEventBody::MemberRemoved(r) => {
                if let Ok(sockets) = self.shared.sockets.read() {
                    for s in sockets.values().filter(|s| s.user == r.user_id) {
                        s.kick.kick(Close::Removed);
                    }
                }
                Some(&r.user_id)
            }
        };
        if let RoomEventBody::MessageCreated(m) = event.body {
            self.order.insert(m);
            return;
        }
        let Ok(sockets) = self.shared.sockets.read() else { return };
        let there = sockets.iter().filter(|(id, _)| held.is_none_or(|h| h.tells(**id))).map(|(_, s)| s);
        offer(
            there,
            None,
            |s| {
                except != Some(&s.user)
                    && !activity.is_some_and(|u| s.blocks.hides_activity(u))
                    && !hidden.is_some_and(|u| s.blocks.hides_messages(u))
            },
            |codec| codec.room_event(&event),
        );
    }

    /// Offers a message, in order, to every socket of the room but those whose user
    /// hides its sender (a block with `hide_in_groups`).
    fn deliver(&self, m: &Message) {
        let fallback = match m.sender_name {
            Some(_) => None,
            None => self.shared.names.read().ok().and_then(|n| n.get(&m.sender_id).cloned()),
        };
        let Ok(sockets) = self.shared.sockets.read() else { return };
        offer(
            sockets.values(),
            Some(m.seq),
            |s| !s.blocks.hides_messages(&m.sender_id),
            |codec| Some(codec.message(m, fallback.as_deref())),
        );
        let delay = (chat_domain::time::now() - m.created_at).to_std().unwrap_or_default();
        crate::metrics::FANOUT_DELAY.observe(delay.as_secs_f64());
    }
}

/// Resolves at `deadline`, or never without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use chat_domain::proto::events::PresenceChange;

    use super::*;

    fn change(user: &str, joined: bool) -> anyhow::Result<(UserId, RoomEvent)> {
        let (tenant, room, user) = (TenantId::parse("t1")?, RoomId::parse("r1")?, UserId::parse(user)?);
        let p = PresenceChange { user_id: user.clone(), user_name: None };
        let body = if joined { RoomEventBody::PresenceJoined(p) } else { RoomEventBody::PresenceLeft(p) };
        Ok((user, RoomEvent::new(&tenant, &room, chat_domain::time::now(), body)))
    }

    /// Which of sockets 1..=10 each held user's change is told to.
    fn told(held: &mut Held) -> Vec<(String, &'static str, Vec<u64>)> {
        held.take()
            .into_iter()
            .map(|c| {
                let (user, kind) = match &c.last.body {
                    RoomEventBody::PresenceJoined(p) => (p.user_id.to_string(), "joined"),
                    RoomEventBody::PresenceLeft(p) => (p.user_id.to_string(), "left"),
                    _ => (String::new(), "other"),
                };
                (user, kind, (1..=10).filter(|id| c.tells(*id)).collect())
            })
            .collect()
    }

    #[test]
    fn an_arrival_and_departure_cancel_for_the_sockets_there_for_both() -> anyhow::Result<()> {
        let window = Duration::from_secs(1);
        let mut held = Held::default();
        // Socket ids 1..=4 were registered when xavier arrived, 5..=7 came before he left.
        let (x, joined) = change("xavier", true)?;
        held.hold(x.clone(), joined, 5, window);
        let (_, left) = change("xavier", false)?;
        held.hold(x, left, 8, window);
        // Yann left (sockets 1..=2 there) and came back (sockets 1..=5 there).
        let (y, left) = change("yann", false)?;
        held.hold(y.clone(), left, 3, window);
        let (_, joined) = change("yann", true)?;
        held.hold(y, joined, 6, window);
        // Zoe only arrived, with sockets 1..=3 there.
        let (z, joined) = change("zoe", true)?;
        held.hold(z, joined, 4, window);
        assert_eq!(held.count, 5);
        assert_eq!(
            told(&mut held),
            [
                // Sockets 5..=7 were greeted with xavier online: they learn he left.
                ("xavier".to_owned(), "left", vec![5, 6, 7]),
                // Sockets 3..=5 were greeted without yann: they learn he is back.
                ("yann".to_owned(), "joined", vec![3, 4, 5]),
                ("zoe".to_owned(), "joined", vec![1, 2, 3]),
            ]
        );
        assert_eq!((held.count, held.until), (0, None));
        Ok(())
    }
}
