//! A tenant's settings: the typed view of the `tenants.settings` JSONB document.
//!
//! The document also holds the webhook keys (`webhook_url`, `webhook_secret`, `retry`,
//! read by `Tenant`/`Webhook`); [`TenantSettings`] is the rest of it, one key each:
//!
//! - `jwt`: the tenant's own auth servers whose tokens the gateway accepts as user
//!   tokens ([`JwtSettings`], [`JwtIssuer`]).
//! - `edit_window_secs`: how long after sending an author may edit a message.
//! - `upload_max_bytes`, `upload_allowed_types`: what an attachment may be.
//! - `search_language`: how message search splits and stems words
//!   ([`SEARCH_LANGUAGES`]).
//!
//! Every key is optional in the stored document (absent means the default), so tenants
//! created before a key existed read as the defaults. [`TenantSettings::validate`]
//! checks a whole document's shape and bounds; parsing the keys themselves (PEM, JWKS)
//! needs cryptography and is the gateway's job (`gateway::jwt`), done before a write.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ApiError;

/// Default edit window: 15 minutes.
pub const DEFAULT_EDIT_WINDOW_SECS: u64 = 900;
/// Longest edit window: 30 days.
pub const MAX_EDIT_WINDOW_SECS: u64 = 30 * 24 * 3600;
/// Default upload limit: 10 MiB.
pub const DEFAULT_UPLOAD_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Largest upload limit a tenant may set: 1 GiB.
pub const MAX_UPLOAD_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// Most MIME types in `upload_allowed_types`.
pub const MAX_ALLOWED_TYPES: usize = 200;
/// Most JWT issuers per tenant.
pub const MAX_ISSUERS: usize = 20;
/// Most keys in one issuer's JWKS.
pub const MAX_JWKS_KEYS: usize = 20;
/// Largest PEM text or JWKS document (bytes of JSON), generous for RSA-8192.
pub const MAX_KEY_TEXT: usize = 32 * 1024;
/// Shortest HS256 secret (RFC 7518 §3.2: at least the hash's 256 bits).
pub const MIN_HS256_SECRET: usize = 32;
/// Longest HS256 secret.
pub const MAX_HS256_SECRET: usize = 1024;

/// The languages message search knows: PostgreSQL's built-in text search
/// configurations. `simple` (the default) lower-cases words and nothing else, which
/// suits any language; the others also stem words and drop stop words.
pub const SEARCH_LANGUAGES: [&str; 29] = [
    "simple",
    "arabic",
    "armenian",
    "basque",
    "catalan",
    "danish",
    "dutch",
    "english",
    "finnish",
    "french",
    "german",
    "greek",
    "hindi",
    "hungarian",
    "indonesian",
    "irish",
    "italian",
    "lithuanian",
    "nepali",
    "norwegian",
    "portuguese",
    "romanian",
    "russian",
    "serbian",
    "spanish",
    "swedish",
    "tamil",
    "turkish",
    "yiddish",
];

/// The default search language.
pub fn default_search_language() -> String {
    "simple".to_owned()
}

/// The attachment types allowed by default: images, PDF, plain text and CSV, the
/// common office formats and zip.
pub const DEFAULT_UPLOAD_ALLOWED_TYPES: [&str; 15] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
    "text/plain",
    "text/csv",
    "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.ms-excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text",
    "application/zip",
];

/// A tenant's settings (all but the webhook's). Serialized with exactly these key
/// names into `tenants.settings`; other services read the keys they need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct TenantSettings {
    /// External JWT issuers whose tokens are user tokens of this tenant.
    pub jwt: JwtSettings,
    /// Seconds after sending during which the author may edit a message.
    pub edit_window_secs: u64,
    /// Largest attachment, in bytes.
    pub upload_max_bytes: u64,
    /// MIME types (`type/subtype`, lower case) an attachment may have, judged from
    /// its bytes.
    pub upload_allowed_types: Vec<String>,
    /// The language of message search (one of [`SEARCH_LANGUAGES`]).
    pub search_language: String,
}

impl Default for TenantSettings {
    fn default() -> Self {
        Self {
            jwt: JwtSettings::default(),
            edit_window_secs: DEFAULT_EDIT_WINDOW_SECS,
            upload_max_bytes: DEFAULT_UPLOAD_MAX_BYTES,
            upload_allowed_types: DEFAULT_UPLOAD_ALLOWED_TYPES.iter().map(|t| (*t).to_owned()).collect(),
            search_language: default_search_language(),
        }
    }
}

/// The `jwt` key: the tenant's registered issuers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct JwtSettings {
    pub issuers: Vec<JwtIssuer>,
}

/// The signature algorithms an issuer may use. One per issuer: a token whose header
/// names another (`none`, or HS256 for an RS256 issuer) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    ES256,
}

impl JwtAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            JwtAlgorithm::HS256 => "HS256",
            JwtAlgorithm::RS256 => "RS256",
            JwtAlgorithm::ES256 => "ES256",
        }
    }
}

fn default_user_id_claim() -> String {
    "sub".to_owned()
}

/// One external auth server. Its tokens must carry `iss` equal to [`Self::issuer`],
/// an `exp`, the configured `aud` when [`Self::audience`] is set, and the user id in
/// [`Self::user_id_claim`]. The key is a shared `secret` (HS256), or a public key as
/// `public_key_pem` or an inline `jwks` (RS256, ES256; a token's `kid` picks the key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct JwtIssuer {
    /// The `iss` claim. Registered to one tenant only, so a token without `tid`
    /// finds its tenant by it. 1 to 512 characters, not blank, no control characters.
    #[schemars(length(min = 1, max = 512), regex(pattern = PRINTABLE))]
    pub issuer: String,
    pub algorithm: JwtAlgorithm,
    /// The `aud` the tokens must name; absent: `aud` is not checked. 1 to 512
    /// characters, not blank, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512), regex(pattern = PRINTABLE))]
    pub audience: Option<String>,
    /// The claim holding the user id (a string). 1 to 128 characters, not blank, no
    /// control characters.
    #[serde(default = "default_user_id_claim")]
    #[schemars(length(min = 1, max = 128), regex(pattern = PRINTABLE))]
    pub user_id_claim: String,
    /// HS256: the shared secret (its UTF-8 bytes). Never shown: a read shows
    /// `secret_set` instead, and a write without it keeps the stored one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// In a read: whether a secret is stored (the secret itself is redacted).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret_set: bool,
    /// RS256/ES256: an SPKI public key (`-----BEGIN PUBLIC KEY-----`, or
    /// `BEGIN RSA PUBLIC KEY` for RS256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_pem: Option<String>,
    /// RS256/ES256: a JWKS document (`{"keys":[...]}`), as the issuer publishes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
}

/// Changes to [`TenantSettings`]: each present key replaces the stored one (`null`
/// resets it to its default); any other key is a `400`. The bounds are those
/// [`TenantSettings::validate`] enforces.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(extend("additionalProperties" = false))]
pub struct TenantSettingsPatch {
    pub jwt: Option<JwtSettings>,
    /// 0 to 30 days.
    #[schemars(range(max = MAX_EDIT_WINDOW_SECS))]
    pub edit_window_secs: Option<u64>,
    /// 1 byte to 1 GiB.
    #[schemars(range(min = 1, max = MAX_UPLOAD_MAX_BYTES))]
    pub upload_max_bytes: Option<u64>,
    /// At most 200 `type/subtype` MIME types (kept in lower case).
    #[schemars(length(max = MAX_ALLOWED_TYPES))]
    pub upload_allowed_types: Option<Vec<String>>,
    #[serde(default)]
    pub search_language: Option<String>,
}

impl TenantSettingsPatch {
    /// A patch that replaces every key (`PUT`): `settings` as given, defaults included.
    pub fn replace_all(settings: TenantSettings) -> Self {
        Self {
            jwt: Some(settings.jwt),
            edit_window_secs: Some(settings.edit_window_secs),
            upload_max_bytes: Some(settings.upload_max_bytes),
            upload_allowed_types: Some(settings.upload_allowed_types),
            search_language: Some(settings.search_language),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.jwt.is_none()
            && self.edit_window_secs.is_none()
            && self.upload_max_bytes.is_none()
            && self.upload_allowed_types.is_none()
            && self.search_language.is_none()
    }

    /// `current` with this patch applied. An HS256 issuer given without `secret`
    /// keeps the secret stored for the same `issuer` (so a read, edited and written
    /// back, does not need the secret again).
    pub fn apply(self, current: &TenantSettings) -> TenantSettings {
        let mut next = current.clone();
        if let Some(mut jwt) = self.jwt {
            for issuer in &mut jwt.issuers {
                issuer.secret_set = false;
                if issuer.secret.is_none() && issuer.algorithm == JwtAlgorithm::HS256 {
                    issuer.secret = current
                        .jwt
                        .issuers
                        .iter()
                        .find(|old| old.issuer == issuer.issuer && old.algorithm == JwtAlgorithm::HS256)
                        .and_then(|old| old.secret.clone());
                }
            }
            next.jwt = jwt;
        }
        if let Some(v) = self.edit_window_secs {
            next.edit_window_secs = v;
        }
        if let Some(v) = self.upload_max_bytes {
            next.upload_max_bytes = v;
        }
        if let Some(v) = self.upload_allowed_types {
            next.upload_allowed_types = v;
        }
        if let Some(v) = self.search_language {
            next.search_language = v;
        }
        next
    }
}

impl TenantSettings {
    /// The settings in a stored `tenants.settings` document (unknown keys, such as the
    /// webhook's, ignored; a key that does not parse reads as its default).
    pub fn from_stored(doc: &serde_json::Value) -> Self {
        let d = Self::default();
        let key = |k: &str| doc.get(k).filter(|v| !v.is_null()).cloned();
        Self {
            jwt: key("jwt").and_then(|v| serde_json::from_value(v).ok()).unwrap_or(d.jwt),
            edit_window_secs: key("edit_window_secs").and_then(|v| v.as_u64()).unwrap_or(d.edit_window_secs),
            upload_max_bytes: key("upload_max_bytes").and_then(|v| v.as_u64()).unwrap_or(d.upload_max_bytes),
            upload_allowed_types: key("upload_allowed_types")
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or(d.upload_allowed_types),
            search_language: key("search_language")
                .and_then(|v| v.as_str().map(str::to_owned))
                .filter(|l| SEARCH_LANGUAGES.contains(&l.as_str()))
                .unwrap_or(d.search_language),
        }
    }

    /// The JSON object merged into `tenants.settings` (these keys only).
    pub fn to_stored(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(|_| serde_json::json!({}))
    }

    /// These settings as shown to API callers: HS256 secrets replaced by `secret_set`.
    pub fn redacted(&self) -> Self {
        let mut shown = self.clone();
        for issuer in &mut shown.jwt.issuers {
            issuer.secret_set = issuer.secret.take().is_some();
        }
        shown
    }

    /// The issuer registered for the `iss` value `issuer`.
    pub fn issuer(&self, issuer: &str) -> Option<&JwtIssuer> {
        self.jwt.issuers.iter().find(|i| i.issuer == issuer)
    }

    /// Checks shapes and bounds; the error names the field (`jwt.issuers[0].secret`).
    pub fn validate(&self) -> Result<(), ApiError> {
        if self.edit_window_secs > MAX_EDIT_WINDOW_SECS {
            return Err(ApiError::validation(
                "edit_window_secs",
                format!("edit_window_secs must be between 0 and {MAX_EDIT_WINDOW_SECS}"),
            ));
        }
        if !(1..=MAX_UPLOAD_MAX_BYTES).contains(&self.upload_max_bytes) {
            return Err(ApiError::validation(
                "upload_max_bytes",
                format!("upload_max_bytes must be between 1 and {MAX_UPLOAD_MAX_BYTES}"),
            ));
        }
        if self.upload_allowed_types.len() > MAX_ALLOWED_TYPES {
            return Err(ApiError::validation(
                "upload_allowed_types",
                format!("upload_allowed_types may list at most {MAX_ALLOWED_TYPES} types"),
            ));
        }
        for (i, t) in self.upload_allowed_types.iter().enumerate() {
            if !is_mime_type(t) {
                return Err(ApiError::validation(
                    format!("upload_allowed_types[{i}]"),
                    format!("{t:?} is not a lower-case MIME type (type/subtype)"),
                ));
            }
        }
        if !SEARCH_LANGUAGES.contains(&self.search_language.as_str()) {
            return Err(ApiError::validation(
                "search_language",
                format!("search_language must be one of: {}", SEARCH_LANGUAGES.join(", ")),
            ));
        }
        if self.jwt.issuers.len() > MAX_ISSUERS {
            return Err(ApiError::validation(
                "jwt.issuers",
                format!("at most {MAX_ISSUERS} issuers may be registered"),
            ));
        }
        for (i, issuer) in self.jwt.issuers.iter().enumerate() {
            issuer.validate(&format!("jwt.issuers[{i}]"))?;
            if self.jwt.issuers[..i].iter().any(|other| other.issuer == issuer.issuer) {
                return Err(ApiError::validation(
                    format!("jwt.issuers[{i}].issuer"),
                    format!("issuer {:?} is listed twice", issuer.issuer),
                ));
            }
        }
        Ok(())
    }
}

/// [`printable`] as a JSON Schema pattern (control characters are Unicode's `Cc`).
const PRINTABLE: &str = r"^[^\x00-\x1F\x7F-\x9F]*[^\s\x00-\x1F\x7F-\x9F][^\x00-\x1F\x7F-\x9F]*$";

/// A printable string of `1..=max` characters.
fn printable(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.chars().count() <= max && !s.contains(char::is_control)
}

impl JwtIssuer {
    fn validate(&self, at: &str) -> Result<(), ApiError> {
        let bad = |field: &str, msg: String| Err(ApiError::validation(format!("{at}.{field}"), msg));
        if !printable(&self.issuer, 512) {
            return bad("issuer", "issuer must be 1 to 512 printable characters".into());
        }
        if self.audience.as_deref().is_some_and(|a| !printable(a, 512)) {
            return bad("audience", "audience must be 1 to 512 printable characters".into());
        }
        if !printable(&self.user_id_claim, 128) {
            return bad("user_id_claim", "user_id_claim must be 1 to 128 printable characters".into());
        }
        let alg = self.algorithm.as_str();
        match self.algorithm {
            JwtAlgorithm::HS256 => {
                if self.public_key_pem.is_some() || self.jwks.is_some() {
                    let field = if self.public_key_pem.is_some() { "public_key_pem" } else { "jwks" };
                    return bad(field, format!("{field} is for RS256/ES256; an HS256 issuer has a secret"));
                }
                match &self.secret {
                    None => return bad("secret", "secret is required for an HS256 issuer".into()),
                    Some(s) if !(MIN_HS256_SECRET..=MAX_HS256_SECRET).contains(&s.len()) || s.contains('\0') => {
                        return bad(
                            "secret",
                            format!("secret must be {MIN_HS256_SECRET} to {MAX_HS256_SECRET} bytes (no NUL)"),
                        );
                    }
                    Some(_) => {}
                }
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 => {
                if self.secret.is_some() {
                    return bad("secret", format!("secret is for HS256; a {alg} issuer has a public key"));
                }
                match (&self.public_key_pem, &self.jwks) {
                    (None, None) => {
                        return bad("public_key_pem", format!("a {alg} issuer needs public_key_pem or jwks"));
                    }
                    (Some(_), Some(_)) => {
                        return bad("jwks", "give public_key_pem or jwks, not both".into());
                    }
                    (Some(pem), None) => {
                        if pem.len() > MAX_KEY_TEXT || pem.contains('\0') {
                            return bad(
                                "public_key_pem",
                                format!("public_key_pem is longer than {MAX_KEY_TEXT} bytes"),
                            );
                        }
                    }
                    (None, Some(jwks)) => {
                        let keys = jwks.get("keys").and_then(|k| k.as_array());
                        match keys {
                            Some(keys) if (1..=MAX_JWKS_KEYS).contains(&keys.len()) => {}
                            _ => {
                                return bad(
                                    "jwks",
                                    format!(
                                        "jwks must be a JWKS document {{\"keys\":[...]}} with 1 to {MAX_JWKS_KEYS} keys"
                                    ),
                                );
                            }
                        }
                        if jwks.to_string().len() > MAX_KEY_TEXT {
                            return bad("jwks", format!("jwks is longer than {MAX_KEY_TEXT} bytes"));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// `type/subtype`, lower case, RFC 6838 restricted-name characters.
fn is_mime_type(t: &str) -> bool {
    let name = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "!#$&-^_.+".contains(c))
    };
    matches!(t.split_once('/'), Some((ty, sub)) if name(ty) && name(sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(issuer: &str, secret: Option<&str>) -> JwtIssuer {
        JwtIssuer {
            issuer: issuer.into(),
            algorithm: JwtAlgorithm::HS256,
            audience: None,
            user_id_claim: "sub".into(),
            secret: secret.map(str::to_owned),
            secret_set: false,
            public_key_pem: None,
            jwks: None,
        }
    }

    #[test]
    fn defaults_fill_an_empty_or_foreign_document() {
        let s = TenantSettings::from_stored(&serde_json::json!({"webhook_url": "https://x", "edit_window_secs": 60}));
        assert_eq!(s.edit_window_secs, 60);
        assert_eq!(s.upload_max_bytes, 10_485_760);
        assert!(s.upload_allowed_types.iter().any(|t| t == "application/pdf"));
        assert!(s.jwt.issuers.is_empty());
        assert_eq!(TenantSettings::from_stored(&serde_json::json!({})), TenantSettings::default());
    }

    #[test]
    fn stored_keys_have_the_agreed_names() {
        let v = TenantSettings::default().to_stored();
        for k in ["jwt", "edit_window_secs", "upload_max_bytes", "upload_allowed_types", "search_language"] {
            assert!(v.get(k).is_some(), "{k} missing from {v}");
        }
    }

    #[test]
    fn secrets_are_redacted_and_kept_across_a_write_without_them() {
        let mut s = TenantSettings::default();
        s.jwt.issuers.push(hs("https://a", Some(&"k".repeat(32))));
        let shown = s.redacted();
        assert_eq!(shown.jwt.issuers[0].secret, None);
        assert!(shown.jwt.issuers[0].secret_set);
        let text = serde_json::to_string(&shown).unwrap_or_default();
        assert!(!text.contains(&"k".repeat(32)));
        // Writing the shown form back keeps the secret.
        let next = TenantSettingsPatch { jwt: Some(shown.jwt), ..Default::default() }.apply(&s);
        assert_eq!(next.jwt.issuers[0].secret, s.jwt.issuers[0].secret);
        assert!(!next.jwt.issuers[0].secret_set);
    }

    #[test]
    fn validation_names_the_field() {
        let mut s = TenantSettings::default();
        s.jwt.issuers.push(hs("https://a", Some("short")));
        assert_eq!(s.validate().err().and_then(|e| e.field).as_deref(), Some("jwt.issuers[0].secret"));
        s.jwt.issuers[0].secret = Some("s".repeat(40));
        assert!(s.validate().is_ok());
        s.jwt.issuers.push(hs("https://a", Some(&"t".repeat(40))));
        assert_eq!(s.validate().err().and_then(|e| e.field).as_deref(), Some("jwt.issuers[1].issuer"));
        let mut s = TenantSettings { upload_allowed_types: vec!["Image/PNG".into()], ..Default::default() };
        assert_eq!(s.validate().err().and_then(|e| e.field).as_deref(), Some("upload_allowed_types[0]"));
        s.upload_allowed_types = vec!["image/png".into()];
        s.upload_max_bytes = 0;
        assert_eq!(s.validate().err().and_then(|e| e.field).as_deref(), Some("upload_max_bytes"));
        let s = TenantSettings { edit_window_secs: MAX_EDIT_WINDOW_SECS + 1, ..Default::default() };
        assert_eq!(s.validate().err().and_then(|e| e.field).as_deref(), Some("edit_window_secs"));
    }

    #[test]
    fn public_key_issuers_need_exactly_one_key_source() {
        let mut i = hs("https://a", None);
        i.algorithm = JwtAlgorithm::RS256;
        let s = TenantSettings { jwt: JwtSettings { issuers: vec![i.clone()] }, ..Default::default() };
        assert_eq!(s.validate().err().and_then(|e| e.field).as_deref(), Some("jwt.issuers[0].public_key_pem"));
        i.jwks = Some(serde_json::json!({"keys": []}));
        let s = TenantSettings { jwt: JwtSettings { issuers: vec![i] }, ..Default::default() };
        assert_eq!(s.validate().err().and_then(|e| e.field).as_deref(), Some("jwt.issuers[0].jwks"));
    }
}
