//! What the registry and the fan-out tasks share: a registered socket (its codec, its
//! queue, its kick switch), the room's sockets, and offering one event to many
//! sockets, rendered once per codec.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, RwLock};

use bytestring::ByteString;
use chat_domain::ids::UserId;
use tokio::sync::Notify;

use crate::fanout::blocks::BlockSet;
use crate::session::codec::{Close, Codec};
use crate::session::queue::{self, Out};
use crate::session::relay::{self, Pending};

/// Tells a socket's session to close, from outside its task.
#[derive(Debug, Default)]
pub struct Kick {
    notify: Notify,
    /// The [`Close`] reason's index, once kicked.
    why: AtomicU8,
    kicked: AtomicBool,
}

impl Kick {
    /// Asks the session to close (the first reason wins).
    pub fn kick(&self, why: Close) {
        if !self.kicked.swap(true, Ordering::SeqCst) {
            self.why.store(why.index(), Ordering::SeqCst);
            self.notify.notify_one();
        }
    }

    /// Resolves with the reason once kicked.
    pub async fn kicked(&self) -> Close {
        self.notify.notified().await;
        let why = self.why.load(Ordering::SeqCst);
        Close::ALL.into_iter().find(|c| c.index() == why).unwrap_or(Close::Removed)
    }
}

/// One registered socket.
#[derive(Clone)]
pub(crate) struct Socket {
    pub(crate) user: UserId,
    pub(crate) codec: &'static dyn Codec,
    pub(crate) tx: queue::Sender,
    pub(crate) kick: Arc<Kick>,
    /// Whether presence knows this socket: set when a `connect` for it was answered,
    /// cleared when presence asks for a resync. The lease task announces those unset.
    pub(crate) announced: Arc<AtomicBool>,
    /// The user's blocks (shared by all their sockets here).
    pub(crate) blocks: Arc<BlockSet>,
}

impl Socket {
    /// Queues a frame, handing back the connection for the caller to wake; a full
    /// queue kicks the socket.
    pub(crate) fn offer_unwoken(&self, out: Out) -> Option<Pending> {
        match self.tx.offer_unwoken(out) {
            Ok(pending) => pending,
            Err(queue::Refused::Closed) => None,
            Err(queue::Refused::Full) => {
                crate::metrics::SLOW_KICKS.inc();
                self.kick.kick(Close::Slow);
                None
            }
        }
    }
}

/// Codecs an event is rendered for without allocating; an event reaching sockets of
/// more codecs than this (a gateway with more dialects) keeps the rest in a `Vec`.
const INLINE_CODECS: usize = 4;

/// A codec's identity: the address of its (one, `&'static`) instance.
pub(crate) fn codec_key(codec: &'static dyn Codec) -> usize {
    (codec as *const dyn Codec).cast::<()>() as usize
}

/// A frame per codec, rendered the first time a socket speaking it needs it. The set
/// of codecs is open (dialect crates bring their own), so frames are kept by codec
/// identity; an event meets a handful at most, so a linear search beats hashing.
struct Rendered<F> {
    inline: [Option<(usize, Option<ByteString>)>; INLINE_CODECS],
    more: Vec<(usize, Option<ByteString>)>,
    render: F,
}

impl<F: FnMut(&'static dyn Codec) -> Option<ByteString>> Rendered<F> {
    fn new(render: F) -> Self {
        Self { inline: Default::default(), more: Vec::new(), render }
    }

    fn for_codec(&mut self, codec: &'static dyn Codec) -> Option<ByteString> {
        let key = codec_key(codec);
        for slot in &mut self.inline {
            match slot {
                Some((k, frame)) if *k == key => return frame.clone(),
                Some(_) => {}
                None => {
                    let frame = (self.render)(codec);
                    *slot = Some((key, frame.clone()));
                    return frame;
                }
            }
        }
        if let Some((_, frame)) = self.more.iter().find(|(k, _)| *k == key) {
            return frame.clone();
        }
        let frame = (self.render)(codec);
        self.more.push((key, frame.clone()));
        frame
    }
}

/// Offers one event to `sockets` (those `only` keeps), rendered once per dialect.
///
/// Every frame is queued before any connection is woken, and the connections of each
/// other worker thread are woken through its relay with one wake-up
/// ([`relay::wake_all`]): woken one by one, each would take the CPU from this loop
/// there and then, and cost a switch there and back per socket.
pub(crate) fn offer<'a>(
    sockets: impl Iterator<Item = &'a Socket>,
    seq: Option<i64>,
    only: impl Fn(&Socket) -> bool,
    render: impl FnMut(&'static dyn Codec) -> Option<ByteString>,
) {
    let mut rendered = Rendered::new(render);
    let mut pending = Vec::new();
    for socket in sockets.filter(|s| only(s)) {
        if let Some(text) = rendered.for_codec(socket.codec) {
            pending.extend(socket.offer_unwoken(Out { seq, text }));
        }
    }
    relay::wake_all(pending);
}

/// What a room's task shares with the registry.
#[derive(Default)]
pub(crate) struct RoomShared {
    pub(crate) sockets: RwLock<HashMap<u64, Socket>>,
    /// Display names of users with sockets here, for messages stored without one.
    pub(crate) names: RwLock<HashMap<UserId, String>>,
}

/// Sockets by user, then by socket id.
pub(crate) type UserSockets = HashMap<UserId, HashMap<u64, Socket>>;

/// Block sets by user (those with sockets here).
pub(crate) type UserBlocks = HashMap<UserId, Arc<BlockSet>>;
