//! What bounds an open socket besides its queue, for every dialect (Socket.IO included):
//!
//! - **Revocation** ([`Watches`]): every socket is watched under its tenant with the
//!   credential it was opened with. When message-store announces a change to the tenant
//!   (`tenant.changed`: a rotated or revoked API key, a new token secret, a changed JWT
//!   issuer — announced on the bus, so a change made through any replica reaches every
//!   replica), each distinct credential of the tenant's sockets here is resolved again,
//!   and the sockets whose credential no longer admits them are kicked
//!   ([`Close::Revoked`]). A socket opened with a user token is also kicked when the
//!   token's `exp` passes ([`Close::Expired`]; a tenant's own issuer's tokens get the 60 s
//!   leeway their verification allows). Every `GATEWAY_AUTH_CACHE_SECS` the credentials
//!   of all sockets are checked again as well ([`sweep`]), so a change whose announcement
//!   this gateway missed still reaches its sockets.
//! - **Caps** ([`Caps`]): sockets open on this gateway per user and per tenant
//!   (`WS_MAX_SOCKETS_PER_USER`, `WS_MAX_SOCKETS_PER_TENANT`); one past either is refused
//!   with the dialect's code ([`Close::TooMany`]). A Socket.IO session is one socket
//!   however many chats it joined.
//! - **Actions** ([`Actions`]): every client action of a socket (each frame that is a
//!   command, every Socket.IO event) spends from its user's budget on this gateway
//!   (`WS_USER_ACTIONS_PER_SEC`, a token bucket refilled continuously, burst one
//!   second's worth), besides counting against the tenant's shared limit (`ratelimit`).
//!   Local on purpose: a per-user count in Redis would cost a round trip per active user
//!   per second.
//! - **Display names** ([`display_name`]): the name a socket shows with the user's
//!   messages and typing. A user token's client cannot pick it: it is the token's `name`
//!   claim (a tenant's own issuer's tokens may carry one), else the user directory's
//!   name. Only the API key — the tenant's own server, which may act as any user anyway —
//!   may name it in the connect request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use actix_web::web;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chat_domain::ErrorCode;
use chat_domain::ids::{TenantId, UserId};
use chat_domain::model::Actor;
use chat_domain::proto::chat::GetUser;
use tokio::task::JoinHandle;

use crate::admit::Admitted;
use crate::fanout::Kick;
use crate::session::codec::Close;
use crate::state::Core;

/// The leeway a tenant's own issuer's `exp` gets at verification (`crate::jwt`).
const ISSUER_LEEWAY_SECS: i64 = 60;

/// Buckets kept before idle ones (full again) are swept out.
const SWEEP_FLOOR: usize = 4096;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Everything here, built once per gateway (a field of [`Core`]).
#[derive(Debug)]
pub struct Guards {
    pub watches: Arc<Watches>,
    pub caps: Arc<Caps>,
    pub actions: Actions,
}

impl Guards {
    pub fn new(max_per_user: usize, max_per_tenant: usize, actions_per_sec: u32) -> Self {
        Self {
            watches: Arc::default(),
            caps: Arc::new(Caps { max_per_user, max_per_tenant, open: Mutex::default() }),
            actions: Actions { per_sec: actions_per_sec, buckets: Mutex::default() },
        }
    }
}

struct Watch {
    credential: Arc<str>,
    user: UserId,
    kick: Arc<Kick>,
}

/// The sockets of this gateway by tenant, with the credential each was opened with.
#[derive(Default)]
pub struct Watches {
    next: AtomicU64,
    by_tenant: Mutex<HashMap<TenantId, HashMap<u64, Watch>>>,
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watches").finish_non_exhaustive()
    }
}

/// A socket's watch; dropping it (the socket ended) stops it.
pub struct Watched {
    watches: Arc<Watches>,
    tenant: TenantId,
    id: u64,
    expiry: Option<JoinHandle<()>>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        if let Some(timer) = self.expiry.take() {
            timer.abort();
        }
        let mut by_tenant = lock(&self.watches.by_tenant);
        if let Some(sockets) = by_tenant.get_mut(&self.tenant) {
            sockets.remove(&self.id);
            if sockets.is_empty() {
                by_tenant.remove(&self.tenant);
            }
        }
    }
}

impl Watches {
    /// Watches a socket of `admitted`: `kick` is kicked when its credential is revoked or
    /// its token expires.
    pub fn watch(self: &Arc<Self>, admitted: &Admitted, kick: Arc<Kick>) -> Watched {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let tenant = admitted.tenant.tenant_id.clone();
        let expiry = expires_at(&admitted.credential).map(|exp| {
            let kick = kick.clone();
            tokio::spawn(async move {
                let left = exp.saturating_sub(chrono::Utc::now().timestamp()).max(0);
                tokio::time::sleep(Duration::from_secs(u64::try_from(left).unwrap_or(0))).await;
                kick.kick(Close::Expired);
            })
        });
        let watch = Watch { credential: admitted.credential.clone(), user: admitted.user.clone(), kick };
        lock(&self.by_tenant).entry(tenant.clone()).or_default().insert(id, watch);
        Watched { watches: self.clone(), tenant, id, expiry }
    }

    /// Sockets of `tenant` watched here.
    pub fn count(&self, tenant: &TenantId) -> usize {
        lock(&self.by_tenant).get(tenant).map_or(0, HashMap::len)
    }

    /// The tenants with sockets watched here.
    pub fn tenants(&self) -> Vec<TenantId> {
        lock(&self.by_tenant).keys().cloned().collect()
    }
}

/// Checks every open socket's credential again every `every` (the gateway's
/// `GATEWAY_AUTH_CACHE_SECS`: as long as a resolved credential is trusted anyway), so
/// that a revocation whose `tenant.changed` this gateway missed (it was reconnecting to
/// NATS, say) still closes its sockets within one period. Credentials still cached cost
/// nothing; the others one lookup each, per tenant with sockets here.
pub async fn sweep(state: web::Data<Core>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        for tenant in state.guards.watches.tenants() {
            recheck(state.clone(), tenant);
        }
    }
}

/// After a change to `tenant` (its caches already forgotten): resolves each credential
/// its sockets here were opened with again, and kicks the sockets it no longer admits.
/// A credential that cannot be checked now (a service down) keeps its sockets.
pub fn recheck(state: web::Data<Core>, tenant: TenantId) {
    let mut by_credential: HashMap<Arc<str>, Vec<(UserId, Arc<Kick>)>> = HashMap::new();
    {
        let by_tenant = lock(&state.guards.watches.by_tenant);
        let Some(sockets) = by_tenant.get(&tenant) else { return };
        for w in sockets.values() {
            by_credential.entry(w.credential.clone()).or_default().push((w.user.clone(), w.kick.clone()));
        }
    }
    tokio::spawn(async move {
        for (credential, sockets) in by_credential {
            // Who the credential names now: `None` when it admits nobody any more.
            let now_names = match crate::admit::identify(&state, &credential).await {
                Ok(id) => Some(id),
                Err(e)
                    if matches!(
                        e.code,
                        ErrorCode::AuthenticationError | ErrorCode::NotFound | ErrorCode::Forbidden
                    ) =>
                {
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, tenant = %tenant, "could not check sockets' credential again; they stay open");
                    continue;
                }
            };
            let revoked = |user: &UserId| match &now_names {
                Some(id) => id.tenant.tenant_id != tenant || id.token_user.as_ref().is_some_and(|u| u != user),
                None => true,
            };
            let mut closed = 0usize;
            for (user, kick) in sockets {
                if revoked(&user) {
                    kick.kick(Close::Revoked);
                    closed += 1;
                }
            }
            if closed > 0 {
                tracing::info!(tenant = %tenant, sockets = closed, "closing sockets whose credential was revoked");
            }
        }
    });
}

/// When a user token stops admitting its sockets (Unix seconds): its `exp`, plus the
/// issuer leeway for a tenant's own issuer's token (one with `iss`). `None` for an API
/// key (not a JWT) or a token without a numeric `exp` (never admitted).
fn expires_at(credential: &str) -> Option<i64> {
    let mut parts = credential.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let claims: serde_json::Value = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    let leeway = if claims.get("iss").is_some() { ISSUER_LEEWAY_SECS } else { 0 };
    Some((exp as i64).saturating_add(leeway))
}

/// Open sockets on this gateway, per user and per tenant.
#[derive(Debug)]
pub struct Caps {
    max_per_user: usize,
    max_per_tenant: usize,
    open: Mutex<HashMap<TenantId, TenantSockets>>,
}

/// A tenant's open sockets here: in all, and per user.
type TenantSockets = (usize, HashMap<UserId, usize>);

/// One socket's place under the caps; dropping it gives the place back.
pub struct Slot {
    caps: Arc<Caps>,
    actor: Actor,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = lock(&self.caps.open);
        if let Some((total, users)) = open.get_mut(&self.actor.tenant_id) {
            *total = total.saturating_sub(1);
            if let Some(n) = users.get_mut(&self.actor.user_id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    users.remove(&self.actor.user_id);
                }
            }
            if *total == 0 {
                open.remove(&self.actor.tenant_id);
            }
        }
    }
}

impl Caps {
    /// A place for one more socket of `actor`, or `None` when the user or the tenant has
    /// as many open here as it may.
    pub fn acquire(self: &Arc<Self>, actor: &Actor) -> Option<Slot> {
        let mut open = lock(&self.open);
        let (total, users) = open.entry(actor.tenant_id.clone()).or_default();
        let mine = users.get(&actor.user_id).copied().unwrap_or(0);
        if *total >= self.max_per_tenant || mine >= self.max_per_user {
            if *total == 0 {
                open.remove(&actor.tenant_id);
            }
            return None;
        }
        *total += 1;
        users.insert(actor.user_id.clone(), mine + 1);
        Some(Slot { caps: self.clone(), actor: actor.clone() })
    }
}

/// Each user's budget of socket actions on this gateway.
#[derive(Debug)]
pub struct Actions {
    per_sec: u32,
    buckets: Mutex<Buckets>,
}

#[derive(Debug, Default)]
struct Buckets {
    by_user: HashMap<(TenantId, UserId), Bucket>,
    sweep_at: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Actions {
    /// Spends one action of `actor`; `false` when the user's budget is spent (the action
    /// is refused). A limit of 0 lets everything through.
    pub fn allow(&self, actor: &Actor) -> bool {
        if self.per_sec == 0 {
            return true;
        }
        let rate = f64::from(self.per_sec);
        let now = Instant::now();
        let mut b = lock(&self.buckets);
        if b.by_user.len() >= b.sweep_at.max(SWEEP_FLOOR) {
            // A bucket idle for a second is full again: forgetting it changes nothing.
            b.by_user.retain(|_, k| now.duration_since(k.at) < Duration::from_secs(1));
            b.sweep_at = 2 * b.by_user.len();
        }
        let key = (actor.tenant_id.clone(), actor.user_id.clone());
        let bucket = b.by_user.entry(key).or_insert(Bucket { tokens: rate, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * rate).min(rate);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The `429` error of an action refused by the user's budget.
pub fn too_many_actions() -> chat_domain::ApiError {
    chat_domain::ApiError::new(
        ErrorCode::RateLimitExceeded,
        "Too many actions on your sockets. Slow down and try again",
    )
}

/// The name a socket of `admitted` shows. `requested` (the connect request's) counts
/// only with the API key; with a user token it is the token's `name` claim, else the
/// user directory's (none when the directory has none).
pub async fn display_name(state: &Core, admitted: &Admitted, requested: Option<String>) -> Option<String> {
    if !admitted.user_token {
        return requested;
    }
    if let Some(name) = claim_name(&admitted.credential) {
        return chat_domain::model::display_name(&name);
    }
    let lookup = GetUser { tenant_id: admitted.tenant.tenant_id.clone(), user_id: admitted.user.clone() };
    match state.bus.request(&lookup).await {
        Ok(user) => user.name.as_deref().and_then(chat_domain::model::display_name),
        Err(e) => {
            if e.code != ErrorCode::NotFound {
                tracing::warn!(error = %e, "user directory unavailable at connect; no display name");
            }
            None
        }
    }
}

/// A JWT's `name` claim, if it is a string.
fn claim_name(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value = serde_json::from_slice(&B64.decode(payload).ok()?).ok()?;
    claims.get("name")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(t: &str, u: &str) -> Option<Actor> {
        Some(Actor { tenant_id: TenantId::parse(t).ok()?, user_id: UserId::parse(u).ok()? })
    }

    #[test]
    fn caps_count_per_user_and_per_tenant_and_give_back() -> Result<(), String> {
        let caps = Arc::new(Caps { max_per_user: 2, max_per_tenant: 3, open: Mutex::default() });
        let (a, b, c) = (actor("t", "a").ok_or("id")?, actor("t", "b").ok_or("id")?, actor("t", "c").ok_or("id")?);
        let a1 = caps.acquire(&a).ok_or("a1")?;
        let _a2 = caps.acquire(&a).ok_or("a2")?;
        assert!(caps.acquire(&a).is_none(), "a third socket of a user");
        let _b1 = caps.acquire(&b).ok_or("b1")?;
        assert!(caps.acquire(&c).is_none(), "a fourth socket of the tenant");
        drop(a1);
        assert!(caps.acquire(&c).is_some(), "a place given back");
        let other = actor("u", "a").ok_or("id")?;
        assert!(caps.acquire(&other).is_some(), "another tenant counts apart");
        Ok(())
    }

    #[test]
    fn actions_are_a_bucket_per_user() -> Result<(), String> {
        let actions = Actions { per_sec: 5, buckets: Mutex::default() };
        let (a, b) = (actor("t", "a").ok_or("id")?, actor("t", "b").ok_or("id")?);
        let allowed = (0..20).filter(|_| actions.allow(&a)).count();
        assert_eq!(allowed, 5, "a burst of one second's worth");
        assert!(actions.allow(&b), "another user has a budget of their own");
        Ok(())
    }

    #[test]
    fn expiry_is_read_from_tokens_only() {
        let token = |claims: serde_json::Value| format!("e30.{}.sig", B64.encode(claims.to_string()));
        assert_eq!(expires_at(&token(serde_json::json!({"exp": 100, "sub": "a"}))), Some(100));
        assert_eq!(expires_at(&token(serde_json::json!({"exp": 100, "iss": "x"}))), Some(160));
        assert_eq!(expires_at("sk_live_abc"), None, "an API key");
        assert_eq!(claim_name(&token(serde_json::json!({"name": "Al"}))).as_deref(), Some("Al"));
    }
}
