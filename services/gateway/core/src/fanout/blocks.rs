//! A user's blocks as this gateway's fan-out applies them: the users whose typing and
//! presence the user does not see, and those whose messages they hide as well
//! (`hide_in_groups`). One set per user with sockets here, shared by all their
//! sockets; read from message-store when the user's first socket joins and kept
//! current by their `block.changed` user events (every gateway with a socket of
//! theirs gets those).
//!
//! The fan-out asks per socket and event; a user with no blocks costs one relaxed
//! atomic load (no lock, no allocation).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use chat_bus::Bus;
use chat_domain::ids::UserId;
use chat_domain::model::Actor;
use chat_domain::proto::blocks::{BlockChanged, ListBlocks};
use tokio::sync::OnceCell;

/// Reads of the block list retried when a change arrived during the read.
const LOAD_ATTEMPTS: u32 = 3;

/// One user's blocks on this gateway.
#[derive(Default)]
pub struct BlockSet {
    /// Whether `blocked` has any entry: the fan-out's one cheap check.
    any: AtomicBool,
    /// Blocked user → whether their messages are hidden too.
    blocked: RwLock<HashMap<UserId, bool>>,
    /// Changes applied so far (a read that raced one is read again).
    changes: AtomicU64,
    loaded: OnceCell<()>,
}

impl BlockSet {
    /// Whether `user`'s typing and presence are hidden (any block of them).
    #[inline]
    pub fn hides_activity(&self, user: &UserId) -> bool {
        self.any.load(Ordering::Relaxed) && self.blocked.read().is_ok_and(|b| b.contains_key(user))
    }

    /// Whether `user`'s messages are hidden (a block with `hide_in_groups`).
    #[inline]
    pub fn hides_messages(&self, user: &UserId) -> bool {
        self.any.load(Ordering::Relaxed) && self.blocked.read().is_ok_and(|b| b.get(user).copied().unwrap_or(false))
    }

    /// Applies a `block.changed` event.
    pub fn apply(&self, change: &BlockChanged) {
        if let Ok(mut blocked) = self.blocked.write() {
            if change.blocked {
                blocked.insert(change.blocked_id.clone(), change.hide_in_groups);
            } else {
                blocked.remove(&change.blocked_id);
            }
            self.changes.fetch_add(1, Ordering::SeqCst);
            self.any.store(!blocked.is_empty(), Ordering::Relaxed);
        }
    }

    /// Reads the user's blocks from message-store, once per set (joins racing it wait
    /// for the same read). A change arriving during the read is applied on top of it
    /// by reading again.
    pub async fn load(&self, bus: &Bus, actor: &Actor) -> anyhow::Result<()> {
        self.loaded
            .get_or_try_init(|| async {
                for _ in 0..LOAD_ATTEMPTS {
                    let before = self.changes.load(Ordering::SeqCst);
                    let list = bus
                        .request(&ListBlocks { actor: actor.clone() })
                        .await
                        .map_err(|e| anyhow::anyhow!("could not read the user's blocks: {e:?}"))?;
                    if let Ok(mut blocked) = self.blocked.write()
                        && self.changes.load(Ordering::SeqCst) == before
                    {
                        *blocked = list.blocks.into_iter().map(|b| (b.user_id, b.hide_in_groups)).collect();
                        self.any.store(!blocked.is_empty(), Ordering::Relaxed);
                        return Ok(());
                    }
                }
                anyhow::bail!("the user's blocks kept changing while being read")
            })
            .await
            .map(|_| ())
    }

    /// The users of `online` whose presence is not hidden.
    pub fn visible(&self, mut online: Vec<UserId>) -> Vec<UserId> {
        if self.any.load(Ordering::Relaxed) {
            online.retain(|u| !self.hides_activity(u));
        }
        online
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Result = anyhow::Result<()>;

    fn change(id: &str, blocked: bool, hide: bool) -> anyhow::Result<BlockChanged> {
        Ok(BlockChanged { blocked_id: UserId::parse(id)?, blocked, hide_in_groups: hide })
    }

    #[test]
    fn an_empty_set_hides_nothing() -> Result {
        let (bob, carol) = (UserId::parse("bob")?, UserId::parse("carol")?);
        let set = BlockSet::default();
        assert!(!set.hides_activity(&bob));
        assert!(!set.hides_messages(&bob));
        assert_eq!(set.visible(vec![bob.clone(), carol.clone()]), vec![bob, carol]);
        Ok(())
    }

    #[test]
    fn a_block_hides_activity_and_with_hide_in_groups_messages_until_lifted() -> Result {
        let (bob, carol) = (UserId::parse("bob")?, UserId::parse("carol")?);
        let set = BlockSet::default();
        set.apply(&change("bob", true, false)?);
        assert!(set.hides_activity(&bob) && !set.hides_messages(&bob));
        assert!(!set.hides_activity(&carol));
        assert_eq!(set.visible(vec![bob.clone(), carol.clone()]), vec![carol]);
        set.apply(&change("bob", true, true)?);
        assert!(set.hides_messages(&bob));
        set.apply(&change("bob", false, false)?);
        assert!(!set.hides_activity(&bob) && !set.hides_messages(&bob));
        assert!(!set.any.load(Ordering::Relaxed), "empty again: the fan-out's check is one load");
        Ok(())
    }
}
