//! Gateway leases: a gateway renews one for all its sockets, and when it stops (it
//! died without a goodbye) its sockets are closed at the moment the lease ran out, a
//! bounded number per call.

use chat_domain::ids::GatewayId;

use crate::redis_state::handle::State;

impl State {
    /// Renews a gateway's lease to `now + ttl_ms` (never shortens it). Whether presence
    /// had a lease for the gateway: `false` means its Redis lost what it knew of that
    /// gateway's sockets (or the gateway is new), and the gateway is asked to announce
    /// them again.
    pub async fn lease(&self, gw: &GatewayId, ttl_ms: i64, now: i64) -> redis::RedisResult<bool> {
        let mut r = self.redis.clone();
        let key = self.global("leases");
        let (known, _): (Option<f64>, i64) = redis::pipe()
            .atomic()
            .cmd("ZSCORE")
            .arg(&key)
            .arg(gw.as_str())
            .cmd("ZADD")
            .arg(&key)
            .arg("GT")
            .arg(now.saturating_add(ttl_ms))
            .arg(gw.as_str())
            .query_async(&mut r)
            .await?;
        Ok(known.is_some())
    }

    /// Every gateway presence holds a lease for.
    pub async fn leased_gateways(&self) -> redis::RedisResult<Vec<String>> {
        let mut r = self.redis.clone();
        redis::cmd("ZRANGE").arg(self.global("leases")).arg(0).arg(-1).query_async(&mut r).await
    }

    /// Moves every lease that runs out before `until` to `until` (never shortens one);
    /// returns how many moved. After Redis was away (a Sentinel failover), gateways
    /// that kept renewing while no renewal could land must not lose their sockets for
    /// it: this gives each a whole lease to renew again.
    pub async fn extend_leases(&self, until: i64) -> redis::RedisResult<usize> {
        let mut r = self.redis.clone();
        let key = self.global("leases");
        let due: Vec<String> =
            redis::cmd("ZRANGEBYSCORE").arg(&key).arg("-inf").arg(format!("({until}")).query_async(&mut r).await?;
        for chunk in due.chunks(self.chunks.0.max(1)) {
            let mut zadd = redis::cmd("ZADD");
            zadd.arg(&key).arg("GT");
            for gw in chunk {
                zadd.arg(until).arg(gw);
            }
            let _: i64 = zadd.query_async(&mut r).await?;
        }
        Ok(due.len())
    }

    /// Closes (part of) the sockets of one gateway whose lease ran out before `now`,
    /// at the moment it ran out. `None` when no lease ran out; otherwise the gateway
    /// and how many sockets were closed (call again until `None`).
    pub async fn expire_lease(&self, now: i64) -> redis::RedisResult<Option<(String, usize)>> {
        let mut r = self.redis.clone();
        let reply: Vec<redis::Value> = self
            .scripts
            .expire_lease
            .arg(&*self.prefix)
            .arg(now)
            .arg(self.timing.grace_ms)
            .arg(self.chunks.0)
            .invoke_async(&mut r)
            .await?;
        let mut reply = reply.into_iter();
        match (reply.next(), reply.next()) {
            (Some(gw), Some(n)) => Ok(Some((redis::from_redis_value(gw)?, redis::from_redis_value(n)?))),
            _ => Ok(None),
        }
    }
}
