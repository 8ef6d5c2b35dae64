//! Signed, expiring attachment links.
//!
//! An attachment's `url` is `/api/chat/{chat_id}/files/{token}`, where the token is
//! `base64url(claims JSON) "." base64url(HMAC-SHA256(key, "attachment-link.v1." + claims))`.
//! The claims say which object of which chat it opens, how to serve it (file name and
//! type) and until when. Nothing is looked up to serve a link: every gateway replica
//! holding the same key (`GATEWAY_LINK_KEY`) can check it, and changing the key
//! invalidates every link handed out so far.
//!
//! A valid signature is not enough to read: the reader must also authenticate and be a
//! participant of the chat (`download.rs`), so a leaked link is useless to others.
//! Links are signed when a message is rendered, so a client that re-fetches history
//! always gets fresh ones.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use chat_domain::ids::RoomId;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Domain separation: this key signs nothing else, but the label keeps a link's MAC
/// from ever being valid as some other kind of token made with the same key.
const LABEL: &[u8] = b"attachment-link.v1.";

/// What a link grants: one object of one chat, served with this name and type, until
/// `exp` (Unix seconds). The object's key starts with its tenant and chat
/// (`store::Store::new_key`), which is how a download checks both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkClaims {
    /// The chat (room) the object belongs to.
    #[serde(rename = "r")]
    pub room: RoomId,
    /// The object's key in the store.
    #[serde(rename = "k")]
    pub key: String,
    /// The file name to serve it under.
    #[serde(rename = "f")]
    pub filename: String,
    /// The type it was sniffed as at upload.
    #[serde(rename = "m")]
    pub mime_type: String,
    /// Expiry, Unix seconds.
    #[serde(rename = "e")]
    pub exp: i64,
}

/// Why a link does not open (both are `403`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the link is malformed or its signature does not match")]
    BadSignature,
    #[error("the link has expired")]
    Expired,
}

/// Signs and checks links with the key every gateway replica shares.
#[derive(Clone)]
pub struct LinkSigner {
    /// The MAC keyed once; each use clones it.
    keyed: Hmac<Sha256>,
    /// How long a freshly rendered link stays valid.
    ttl_secs: i64,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkSigner").field("ttl_secs", &self.ttl_secs).finish_non_exhaustive()
    }
}

impl LinkSigner {
    pub fn new(key: &[u8], ttl_secs: i64) -> Result<Self, hmac::digest::InvalidLength> {
        Ok(Self { keyed: <Hmac<Sha256> as Mac>::new_from_slice(key)?, ttl_secs })
    }

    /// How long links rendered now stay valid.
    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    fn mac(&self, payload: &str) -> Hmac<Sha256> {
        let mut mac = self.keyed.clone();
        mac.update(LABEL);
        mac.update(payload.as_bytes());
        mac
    }

    /// A token for `claims` (whose `exp` the caller chose).
    pub fn sign(&self, claims: &LinkClaims) -> String {
        // Serializing a struct of strings and an integer cannot fail.
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let payload = B64.encode(json);
        let signature = B64.encode(self.mac(&payload).finalize().into_bytes());
        format!("{payload}.{signature}")
    }

    /// A token valid for the configured TTL from `now` (Unix seconds).
    pub fn sign_for(&self, claims: LinkClaims, now: i64) -> String {
        self.sign(&LinkClaims { exp: now.saturating_add(self.ttl_secs), ..claims })
    }

    /// The claims of a token whose signature matches and which has not expired at `now`.
    pub fn verify(&self, token: &str, now: i64) -> Result<LinkClaims, LinkError> {
        let (payload, signature) = token.split_once('.').ok_or(LinkError::BadSignature)?;
        let signature = B64.decode(signature).map_err(|_| LinkError::BadSignature)?;
        // Constant-time comparison.
        self.mac(payload).verify_slice(&signature).map_err(|_| LinkError::BadSignature)?;
        let json = B64.decode(payload).map_err(|_| LinkError::BadSignature)?;
        let claims: LinkClaims = serde_json::from_slice(&json).map_err(|_| LinkError::BadSignature)?;
        if claims.exp <= now {
            return Err(LinkError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type R = Result<(), Box<dyn std::error::Error>>;

    fn claims() -> Result<LinkClaims, chat_domain::ids::IdError> {
        Ok(LinkClaims {
            room: RoomId::parse("room_1")?,
            key: "acme/room_1/abc".into(),
            filename: "ünïcode \"quoted\".png".into(),
            mime_type: "image/png".into(),
            exp: 0,
        })
    }

    #[test]
    fn a_signed_link_opens_until_it_expires() -> R {
        let signer = LinkSigner::new(b"k", 60)?;
        let token = signer.sign_for(claims()?, 1_000);
        assert_eq!(signer.verify(&token, 1_059).map(|c| c.exp), Ok(1_060));
        assert_eq!(signer.verify(&token, 1_060), Err(LinkError::Expired));
        Ok(())
    }

    #[test]
    fn tampering_or_another_key_breaks_the_signature() -> R {
        let signer = LinkSigner::new(b"k", 60)?;
        let token = signer.sign_for(claims()?, 1_000);
        let other = LinkSigner::new(b"other", 60)?;
        assert_eq!(other.verify(&token, 1_000), Err(LinkError::BadSignature));
        // A later expiry signed by nobody.
        let forged = LinkSigner::new(b"k", 6_000)?.sign_for(claims()?, 1_000);
        let (payload, _) = forged.split_once('.').unwrap_or_default();
        let (_, signature) = token.split_once('.').unwrap_or_default();
        assert_eq!(signer.verify(&format!("{payload}.{signature}"), 1_000), Err(LinkError::BadSignature));
        for bad in ["", ".", "abc", "a.b.c", &format!("{token}x")] {
            assert_eq!(signer.verify(bad, 1_000), Err(LinkError::BadSignature), "{bad}");
        }
        Ok(())
    }
}
