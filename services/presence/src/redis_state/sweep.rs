//! Sweeping: which rooms have something due (a closing socket's grace or a typing
//! indicator ended), and removing what is due in one room, atomically, so that only
//! the replica that removed an entry announces it.

use chat_domain::ids::{RoomId, TenantId, UserId};

use crate::redis_state::handle::{SEP, State};

/// What a sweep of one room found.
#[derive(Debug, Default, PartialEq)]
pub struct Swept {
    /// Users whose last socket closed more than the grace ago.
    pub left: Vec<(UserId, Option<String>)>,
    /// Users whose typing expired.
    pub stopped_typing: Vec<(UserId, Option<String>)>,
    /// Users still in the room after the sweep.
    pub users: u64,
}

fn named(users: Vec<String>, names: Vec<Option<String>>) -> Vec<(UserId, Option<String>)> {
    let mut names = names.into_iter();
    users.into_iter().filter_map(|u| Some((UserId::parse(u).ok()?, names.next().flatten()))).collect()
}

impl State {
    /// Rooms with something due at `now` (at most `limit`).
    pub async fn due_rooms(&self, now: i64, limit: usize) -> redis::RedisResult<Vec<(TenantId, RoomId)>> {
        let mut r = self.redis.clone();
        let due: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.global("due"))
            .arg("-inf")
            .arg(now)
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut r)
            .await?;
        Ok(due
            .iter()
            .filter_map(|m| m.split_once(SEP))
            .filter_map(|(t, r)| Some((TenantId::parse(t).ok()?, RoomId::parse(r).ok()?)))
            .collect())
    }

    /// Removes what expired in one room by `now`, atomically; returns who left and who
    /// stopped typing. Only the replica whose script removed an entry announces it.
    pub async fn sweep(&self, tenant: &TenantId, room: &RoomId, now: i64) -> redis::RedisResult<Swept> {
        let mut r = self.redis.clone();
        type Reply = (Vec<String>, Vec<Option<String>>, Vec<String>, Vec<Option<String>>, u64);
        let (left, left_names, stopped, stopped_names, users): Reply = self
            .scripts
            .sweep
            .arg(&*self.prefix)
            .arg(tenant.as_str())
            .arg(room.as_str())
            .arg(now)
            .arg(self.timing.grace_ms)
            .arg(self.timing.history_ms)
            .arg(self.chunks.1)
            .invoke_async(&mut r)
            .await?;
        Ok(Swept { left: named(left, left_names), stopped_typing: named(stopped, stopped_names), users })
    }
}
