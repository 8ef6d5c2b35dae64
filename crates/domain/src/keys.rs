//! API keys. A key is 32 random bytes in hex behind a readable prefix (`sk_` for
//! tenants, `adm_` for operators). Only its SHA-256 is stored: keys are
//! high-entropy, so a fast hash is safe and lets a lookup be one indexed read.

use rand::RngCore;
use sha2::{Digest, Sha256};

/// Prefix of tenant API keys.
pub const TENANT_KEY_PREFIX: &str = "sk_";
/// Prefix of operator (admin) keys.
pub const ADMIN_KEY_PREFIX: &str = "adm_";

/// A fresh random key with the given prefix.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// The stored form of a key.
pub fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The first characters of a key, safe to show in listings and logs.
pub fn display_prefix(key: &str) -> String {
    key.chars().take(10).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_hash_stably() {
        let a = generate(TENANT_KEY_PREFIX);
        let b = generate(TENANT_KEY_PREFIX);
        assert_ne!(a, b);
        assert!(a.starts_with("sk_") && a.len() == 3 + 64);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
        assert_eq!(hash(&a).len(), 64);
    }
}
