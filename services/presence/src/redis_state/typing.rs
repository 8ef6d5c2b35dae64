//! Typing: a user's indicator in a room, set with an expiry or cleared. Expired ones
//! are removed (and announced) by the sweep.

use chat_domain::ids::{RoomId, TenantId, UserId};

use crate::redis_state::handle::State;

impl State {
    /// Sets or clears typing; returns whether the state changed.
    #[allow(clippy::too_many_arguments)]
    pub async fn typing(
        &self,
        tenant: &TenantId,
        room: &RoomId,
        user: &UserId,
        name: Option<&str>,
        is_typing: bool,
        ttl_ms: i64,
        now: i64,
    ) -> redis::RedisResult<bool> {
        let mut r = self.redis.clone();
        let changed: i64 = self
            .scripts
            .typing
            .arg(&*self.prefix)
            .arg(tenant.as_str())
            .arg(room.as_str())
            .arg(user.as_str())
            .arg(name.unwrap_or_default())
            .arg(if is_typing { "1" } else { "0" })
            .arg(now)
            .arg(ttl_ms)
            .invoke_async(&mut r)
            .await?;
        Ok(changed > 0)
    }
}
