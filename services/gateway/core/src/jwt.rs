//! Tenants' own JWTs: tokens a tenant's auth server already issues, accepted as user
//! tokens wherever a `POST /tokens` token is (see `tokens::verify`, which routes a
//! token here when it carries an `iss` claim).
//!
//! A tenant registers issuers in its settings (`chat_domain::settings::JwtIssuer`):
//! an `iss`, one algorithm (HS256 with a shared secret, RS256/ES256 with a PEM public
//! key or an inline JWKS), an optional audience and the claim holding the user id.
//!
//! How a token finds its tenant: its `tid` claim when it has one (the issuer must then
//! be registered by that tenant), else its `iss`, which at most one tenant may register
//! (message-store refuses a second with `409`).
//!
//! What is checked: the header's `alg` is the issuer's algorithm (so `none`, and HS256
//! signed with an RS256 issuer's public key, are refused); the signature, with the
//! JWKS key the header's `kid` names (every key of the set when there is no `kid`);
//! `iss`; `exp` (required) and `nbf`, with [`LEEWAY_SECS`] for clock skew; `aud` when
//! an audience is registered; and a user id claim that is a valid user id.
//!
//! - [`compile`]: settings → keys ready to verify with, or `400` naming the field (the
//!   same code checks a settings write and serves verification, so whatever is
//!   accepted can be used).
//! - [`Issuers`]: the gateway's caches (issuer → tenant, tenant → compiled keys), both
//!   dropped with the tenant's other cache entries when its settings change.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chat_bus::Bus;
use chat_domain::ApiError;
use chat_domain::ids::{TenantId, UserId};
use chat_domain::proto::store::{ResolveIssuer, TenantAuth};
use chat_domain::settings::{JwtAlgorithm, JwtIssuer, JwtSettings};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const LEEWAY_SECS: u64 = 60;

/// Most issuer → tenant entries cached; past it the cache is cleared.
const MAX_ENTRIES: usize = 10_000;

/// One issuer, ready to verify its tokens.
struct Compiled {
    issuer: String,
    algorithm: Algorithm,
    /// The keys, with their `kid` (a PEM key or a shared secret has none).
    keys: Vec<(Option<String>, DecodingKey)>,
    validation: Validation,
    user_id_claim: String,
}

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::HS256 => Algorithm::HS256,
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::ES256 => Algorithm::ES256,
    }
}

/// Whether the crypto backend can build a verifier for `alg` from `key`: a PEM or JWK
/// that decodes but is no usable key (a bad modulus, a point off the curve, a P-384 key
/// for ES256) fails here, at registration, instead of on every token later.
fn usable(alg: Algorithm, key: &DecodingKey) -> bool {
    (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.verifier_factory)(&alg, key).is_ok()
}

fn pem_key(alg: Algorithm, pem: &str) -> Result<DecodingKey, String> {
    let key = match alg {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(pem.as_bytes()),
        _ => DecodingKey::from_ec_pem(pem.as_bytes()),
    }
    .map_err(|e| format!("not a PEM public key for this algorithm ({e})"))?;
    if usable(alg, &key) { Ok(key) } else { Err("the PEM does not hold a usable key for this algorithm".into()) }
}

/// The keys of a JWKS that are for `alg`: keys of another type or curve, declared for
/// another `alg`, or for encryption (`"use":"enc"`) are skipped, as an issuer's
/// published set may hold them; a key for `alg` that does not parse is an error, and so
/// is a set with none.
fn jwks_keys(alg: Algorithm, jwks: &Value) -> Result<Vec<(Option<String>, DecodingKey)>, String> {
    let set: JwkSet = serde_json::from_value(jwks.clone()).map_err(|e| format!("not a JWKS document ({e})"))?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for (k, jwk) in set.keys.iter().enumerate() {
        let of_type = match (&jwk.algorithm, alg) {
            (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
            (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
            _ => false,
        };
        let declared_other = jwk.common.key_algorithm.is_some_and(|a| a.to_string() != format!("{alg:?}"));
        let for_encryption = jwk.common.public_key_use == Some(PublicKeyUse::Encryption);
        if !of_type || declared_other || for_encryption {
            continue;
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("keys[{k}] is not a usable key ({e})"))?;
        if !usable(alg, &key) {
            return Err(format!("keys[{k}] is not a usable {alg:?} key"));
        }
        keys.push((jwk.common.key_id.clone(), key));
    }
    if keys.is_empty() {
        return Err(format!("no key for {alg:?} (RS256: kty RSA; ES256: kty EC with crv P-256)"));
    }
    Ok(keys)
}

fn compile_issuer(at: &str, i: &JwtIssuer) -> Result<Compiled, ApiError> {
    let alg = algorithm(i.algorithm);
    let bad = |field: &str, msg: String| ApiError::validation(format!("{at}.{field}"), format!("{at}.{field}: {msg}"));
    let mut keys = Vec::new();
    if let Some(secret) = &i.secret {
        let key = DecodingKey::from_secret(secret.as_bytes()).map_err(|e| bad("secret", e.to_string()))?;
        keys.push((None, key));
    }
    if let Some(pem) = &i.public_key_pem {
        keys.push((None, pem_key(alg, pem).map_err(|m| bad("public_key_pem", m))?));
    }
    if let Some(jwks) = &i.jwks {
        keys.extend(jwks_keys(alg, jwks).map_err(|m| bad("jwks", m))?);
    }
    let mut validation = Validation::new(alg);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[&i.issuer]);
    let mut required = vec!["exp", "iss"];
    match &i.audience {
        Some(aud) => {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    Ok(Compiled { issuer: i.issuer.clone(), algorithm: alg, keys, validation, user_id_claim: i.user_id_claim.clone() })
}

/// Parses every issuer's keys; `400` naming the field (`jwt.issuers[0].jwks`) when one
/// is not a usable key for its issuer's algorithm. Shapes and bounds are
/// `TenantSettings::validate`'s.
pub fn check(jwt: &JwtSettings) -> Result<(), ApiError> {
    compile(jwt).map(|_| ())
}

fn compile(jwt: &JwtSettings) -> Result<Vec<Compiled>, ApiError> {
    jwt.issuers.iter().enumerate().map(|(n, i)| compile_issuer(&format!("jwt.issuers[{n}]"), i)).collect()
}

fn invalid() -> ApiError {
    ApiError::authentication("Invalid or expired token")
}

impl Compiled {
    /// The user a token of this issuer names, if it is valid.
    fn verify(&self, token: &str, kid: Option<&str>) -> Result<UserId, ApiError> {
        let candidates: Vec<&DecodingKey> = match kid {
            // A `kid` picks the key when the issuer has a key set; a single key
            // (PEM, secret) has no ids to match.
            Some(kid) if self.keys.iter().any(|(id, _)| id.is_some()) => {
                self.keys.iter().filter(|(id, _)| id.as_deref() == Some(kid)).map(|(_, k)| k).collect()
            }
            _ => self.keys.iter().map(|(_, k)| k).collect(),
        };
        let mut last = invalid();
        for key in candidates {
            match jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, key, &self.validation) {
                Ok(data) => return self.user(&data.claims),
                Err(e) => {
                    use jsonwebtoken::errors::ErrorKind;
                    last = match e.kind() {
                        ErrorKind::ExpiredSignature => ApiError::authentication("Token expired"),
                        ErrorKind::ImmatureSignature => ApiError::authentication("Token not yet valid"),
                        ErrorKind::InvalidAudience => ApiError::authentication("Token audience not accepted"),
                        _ => invalid(),
                    };
                    // A signature that fails with one key may pass with another of the set;
                    // any other failure is the token's, whatever the key.
                    if !matches!(e.kind(), ErrorKind::InvalidSignature) {
                        return Err(last);
                    }
                }
            }
        }
        Err(last)
    }

    fn user(&self, claims: &serde_json::Map<String, Value>) -> Result<UserId, ApiError> {
        let bad = || ApiError::authentication(format!("Token claim {:?} is not a valid user id", self.user_id_claim));
        let raw = match claims.get(&self.user_id_claim) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) if n.is_u64() || n.is_i64() => n.to_string(),
            _ => return Err(bad()),
        };
        UserId::parse(raw).map_err(|_| bad())
    }
}

/// A tenant's issuers compiled, with the settings they were compiled from.
type CompiledFor = (JwtSettings, Arc<Vec<Compiled>>);

/// The gateway's caches for external tokens.
#[derive(Default)]
pub struct Issuers {
    /// Issuer (`iss`) → the tenant that registered it, with when it was resolved.
    tenants: Mutex<HashMap<String, (TenantAuth, Instant)>>,
    /// Tenant → its issuers compiled, with the settings they were compiled from (a
    /// tenant record with other settings recompiles).
    compiled: Mutex<HashMap<TenantId, CompiledFor>>,
    /// Counts [`Issuers::forget`]s: an issuer resolved across a tenant change (a key
    /// removed from its JWKS) is used once and not kept.
    epoch: crate::cache_epoch::Epoch,
}

impl std::fmt::Debug for Issuers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuers").finish_non_exhaustive()
    }
}

impl Issuers {
    /// The tenant that registered `issuer` (cached for `ttl`), or `AUTHENTICATION_ERROR`.
    pub async fn tenant(&self, bus: &Bus, ttl: Duration, issuer: &str) -> Result<TenantAuth, ApiError> {
        if let Some((auth, at)) = self.tenants.lock().ok().and_then(|m| m.get(issuer).cloned())
            && at.elapsed() < ttl
        {
            return Ok(auth);
        }
        crate::auth_failures::lookup_allowed(self.tenants.lock().is_ok_and(|m| m.contains_key(issuer)))?;
        let asked_at = self.epoch.now();
        let auth = bus
            .request(&ResolveIssuer { issuer: issuer.to_owned() })
            .await
            .map_err(|e| if e.code == chat_domain::ErrorCode::AuthenticationError { invalid() } else { e })?;
        if let Ok(mut m) = self.tenants.lock()
            && self.epoch.unchanged_since(asked_at)
        {
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(issuer.to_owned(), (auth.clone(), Instant::now()));
        }
        Ok(auth)
    }

    /// Verifies `token`, whose claims say it comes from `issuer`, against the issuers
    /// `tenant` registered; the user it names.
    pub fn verify(&self, tenant: &TenantAuth, issuer: &str, token: &str) -> Result<UserId, ApiError> {
        let jwt = &tenant.settings.jwt;
        let cached = self
            .compiled
            .lock()
            .ok()
            .and_then(|m| m.get(&tenant.tenant_id).filter(|(source, _)| source == jwt).map(|(_, c)| c.clone()));
        let compiled = match cached {
            Some(c) => c,
            None => {
                // Stored settings were checked when written; one that no longer compiles
                // (a backend upgrade refusing a key) rejects its tokens, loudly.
                let c = Arc::new(compile(jwt).map_err(|e| {
                    tracing::error!(tenant = %tenant.tenant_id, error = %e.message, "stored JWT issuers do not compile");
                    invalid()
                })?);
                if let Ok(mut m) = self.compiled.lock() {
                    m.insert(tenant.tenant_id.clone(), (jwt.clone(), c.clone()));
                }
                c
            }
        };
        let entry = compiled.iter().find(|c| c.issuer == issuer).ok_or_else(invalid)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        if header.alg != entry.algorithm {
            return Err(invalid());
        }
        entry.verify(token, header.kid.as_deref())
    }

    /// Forgets what is cached about `tenant`.
    pub fn forget(&self, tenant: &TenantId) {
        if let Ok(mut m) = self.tenants.lock() {
            self.epoch.advance();
            m.retain(|_, (auth, _)| &auth.tenant_id != tenant);
        }
        if let Ok(mut m) = self.compiled.lock() {
            m.remove(tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache_epoch::held::HeldStore;

    /// An issuer resolved before its tenant changed, whose answer arrives after the
    /// change was announced (and the cache forgotten), must not be cached: tokens would
    /// be checked against the old settings (a key the tenant removed from its JWKS) for a
    /// whole TTL after the change.
    #[tokio::test]
    async fn an_issuer_resolved_across_a_change_is_not_kept() -> anyhow::Result<()> {
        let store = HeldStore::start("issuers").await?;
        let bus = store.bus.clone();
        let tenant = TenantId::parse("t1")?;
        let answer = |name: &str| TenantAuth {
            tenant_id: tenant.clone(),
            name: name.into(),
            rate_limit_per_sec: 10,
            settings: Default::default(),
        };
        let issuers = Arc::new(Issuers::default());
        let resolve = || {
            let (issuers, bus) = (issuers.clone(), bus.clone());
            tokio::spawn(async move {
                issuers.tenant(&bus, Duration::from_secs(600), "https://idp.example").await.map(|t| t.name)
            })
        };
        store.lookup_across_a_forget(resolve, || issuers.forget(&tenant), answer).await
    }
}
