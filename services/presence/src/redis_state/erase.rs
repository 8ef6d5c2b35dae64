//! Erasing a tenant's or one user's presence (issue 25, finding 8): every key of the
//! tenant's rooms and its `tenant:<t>` set are deleted; for one user, their members
//! and fields are removed from those keys. Either way the tenant's (or user's) sockets
//! leave the gateways' `gw:<gw>` sets and, for a tenant, its rooms leave `due`.
//! Walks keys with `SCAN`/`*SCAN` (no `KEYS`), so a big Redis is not blocked.

use chat_domain::ids::{TenantId, UserId};
use chat_redis::Redis;

use super::State;

/// The per-room key kinds (see the module map in `redis_state`): sorted sets, hashes.
const ROOM_ZSETS: [&str; 3] = ["conns", "hist", "typing"];
const ROOM_HASHES: [&str; 3] = ["gws", "users", "names"];
const SEP: char = '\x1f';

async fn scan_keys(r: &mut Redis, pattern: &str) -> redis::RedisResult<Vec<String>> {
    let (mut cursor, mut keys) = (0u64, Vec::new());
    loop {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd("SCAN").arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(500).query_async(r).await?;
        keys.extend(batch);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Members (sets), members (sorted sets, without scores) or fields (hashes) of `key`
/// matching `pattern`.
async fn scan_in(r: &mut Redis, cmd: &str, key: &str, pattern: &str) -> redis::RedisResult<Vec<String>> {
    let (mut cursor, mut found) = (0u64, Vec::new());
    let pairs = cmd != "SSCAN";
    loop {
        let (next, batch): (u64, Vec<String>) =
            redis::cmd(cmd).arg(key).arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(500).query_async(r).await?;
        if pairs {
            found.extend(batch.into_iter().step_by(2));
        } else {
            found.extend(batch);
        }
        if next == 0 {
            return Ok(found);
        }
        cursor = next;
    }
}

async fn remove(r: &mut Redis, cmd: &str, key: &str, members: &[String]) -> redis::RedisResult<u64> {
    if members.is_empty() {
        return Ok(0);
    }
    redis::cmd(cmd).arg(key).arg(members).query_async(r).await
}

impl State {
    /// Erases `tenant`'s presence, or only `user`'s in it; how many keys and members
    /// were removed.
    pub async fn erase(&self, tenant: &TenantId, user: Option<&UserId>) -> redis::RedisResult<u64> {
        let mut r = self.redis.clone();
        let p = &self.prefix;
        let mut removed = 0;
        let mut room_keys = Vec::new();
        for kind in ROOM_ZSETS.iter().chain(ROOM_HASHES.iter()) {
            room_keys
                .extend(scan_keys(&mut r, &format!("{p}{kind}:{tenant}:*")).await?.into_iter().map(|k| (*kind, k)));
        }
        let tenant_key = self.tenant_key(tenant);
        match user {
            None => {
                let mut keys: Vec<String> = room_keys.into_iter().map(|(_, k)| k).collect();
                keys.push(tenant_key);
                for chunk in keys.chunks(500) {
                    let n: u64 = redis::cmd("UNLINK").arg(chunk).query_async(&mut r).await?;
                    removed += n;
                }
                let due = self.global("due");
                let rooms = scan_in(&mut r, "ZSCAN", &due, &format!("{tenant}{SEP}*")).await?;
                removed += remove(&mut r, "ZREM", &due, &rooms).await?;
            }
            Some(user) => {
                let (exact, prefixed) = (user.as_str().to_owned(), format!("{user}{SEP}*"));
                for (kind, key) in &room_keys {
                    let (scan, del) = if ROOM_ZSETS.contains(kind) { ("ZSCAN", "ZREM") } else { ("HSCAN", "HDEL") };
                    let mut found = scan_in(&mut r, scan, key, &prefixed).await?;
                    found.push(exact.clone());
                    removed += remove(&mut r, del, key, &found).await?;
                }
                let found = scan_in(&mut r, "ZSCAN", &tenant_key, &prefixed).await?;
                removed += remove(&mut r, "ZREM", &tenant_key, &found).await?;
            }
        }
        // The gateways' socket sets: `tenant␟room␟user␟conn`.
        let sockets = match user {
            None => format!("{tenant}{SEP}*"),
            Some(user) => format!("{tenant}{SEP}*{SEP}{user}{SEP}*"),
        };
        for gw in scan_keys(&mut r, &format!("{p}gw:*")).await? {
            let found = scan_in(&mut r, "SSCAN", &gw, &sockets).await?;
            let found: Vec<String> = match user {
                // `*` may span a room id: keep the members whose third part is the user.
                Some(user) => found.into_iter().filter(|m| m.split(SEP).nth(2) == Some(user.as_str())).collect(),
                None => found,
            };
            removed += remove(&mut r, "SREM", &gw, &found).await?;
        }
        Ok(removed)
    }
}
