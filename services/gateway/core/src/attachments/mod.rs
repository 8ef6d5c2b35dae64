//! Attachments: files sent into a chat and read back through signed, expiring links.
//!
//! - `store`: the object store (local disk or S3-compatible) behind one interface.
//! - `links`: the HMAC-signed tokens in attachment URLs.
//! - `sniff`: types from bytes, never from the client.
//!
//! Every dialect that shows a file message renders each file's `url` through
//! [`AttachmentLinks`]; [`SignedLinks`] signs them at that moment. The routes that
//! upload and serve files are `rest-chat.md`'s (`gateway-chat`), and the URLs point
//! there: `/api/chat/{chat_id}/files/{token}`.

pub mod links;
pub mod sniff;
pub mod store;

use chat_domain::ids::RoomId;
use chat_domain::model::{Attachment, Message};

pub use links::{LinkClaims, LinkSigner};
pub use store::{S3Config, Store, StoreConfig};

/// Turns a stored attachment into the `url` clients fetch it from.
pub trait AttachmentLinks {
    fn url(&self, message: &Message, attachment: &Attachment) -> String;
}

/// Default lifetime of a rendered link.
pub const DEFAULT_LINK_TTL_SECS: i64 = 3600;

/// The attachments' settings.
#[derive(Clone)]
pub struct AttachmentsConfig {
    /// Where files are kept (`GATEWAY_ATTACHMENTS`).
    pub store: StoreConfig,
    /// The key links are signed with (`GATEWAY_LINK_KEY`); every replica needs the same.
    pub link_key: Vec<u8>,
    /// How long a rendered link stays valid (`GATEWAY_LINK_TTL_SECS`).
    pub link_ttl_secs: i64,
    /// Put in front of attachment URLs (`GATEWAY_PUBLIC_URL`, e.g.
    /// `https://chat.example.com`); empty: URLs are paths on the gateway's origin.
    pub public_url: String,
}

impl std::fmt::Debug for AttachmentsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachmentsConfig")
            .field("store", &self.store)
            .field("link_ttl_secs", &self.link_ttl_secs)
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

impl AttachmentsConfig {
    /// Local disk under `dir`, a random link key (one replica only), default TTL.
    pub fn local(dir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            store: StoreConfig::Local(dir.into()),
            link_key: random_key(),
            link_ttl_secs: DEFAULT_LINK_TTL_SECS,
            public_url: String::new(),
        }
    }

    /// From the environment (see the README's Configuration table).
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let location = var("GATEWAY_ATTACHMENTS").unwrap_or_else(|| "attachments".to_owned());
        let store = StoreConfig::parse(&location, |bucket, prefix| S3Config {
            bucket,
            prefix,
            endpoint: var("GATEWAY_S3_ENDPOINT"),
            region: var("GATEWAY_S3_REGION").or_else(|| var("AWS_REGION")).unwrap_or_else(|| "us-east-1".to_owned()),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
            // Path style unless told otherwise when an endpoint is given (MinIO & co.).
            path_style: var("GATEWAY_S3_PATH_STYLE")
                .map_or_else(|| var("GATEWAY_S3_ENDPOINT").is_some(), |v| matches!(v.as_str(), "1" | "true" | "yes")),
        })?;
        let link_key = match var("GATEWAY_LINK_KEY") {
            Some(key) => {
                anyhow::ensure!(key.len() >= 32, "GATEWAY_LINK_KEY must be at least 32 characters");
                key.into_bytes()
            }
            // A shared store means several replicas, which must share the key too.
            None if matches!(store, StoreConfig::S3(_)) => {
                anyhow::bail!("GATEWAY_LINK_KEY must be set (the same on every gateway) when attachments are in S3")
            }
            None => {
                tracing::warn!(
                    "GATEWAY_LINK_KEY is not set: attachment links are signed with a random key, valid on this \
                     gateway until it restarts; set the same key on every replica"
                );
                random_key()
            }
        };
        let link_ttl_secs = match var("GATEWAY_LINK_TTL_SECS") {
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|s| *s > 0)
                .ok_or_else(|| anyhow::anyhow!("GATEWAY_LINK_TTL_SECS must be a positive number of seconds"))?,
            None => DEFAULT_LINK_TTL_SECS,
        };
        let public_url = var("GATEWAY_PUBLIC_URL").unwrap_or_default().trim_end_matches('/').to_owned();
        Ok(Self { store, link_key, link_ttl_secs, public_url })
    }
}

fn random_key() -> Vec<u8> {
    let mut key = vec![0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    key
}

/// What handlers share: the store and the link signer.
#[derive(Debug, Clone)]
pub struct Attachments {
    pub store: Store,
    pub links: LinkSigner,
    public_url: String,
}

impl Attachments {
    pub fn open(config: &AttachmentsConfig) -> anyhow::Result<Self> {
        Ok(Self {
            store: Store::open(&config.store)?,
            links: LinkSigner::new(&config.link_key, config.link_ttl_secs)?,
            public_url: config.public_url.clone(),
        })
    }

    /// Removes the objects of a deleted message's files. The message is deleted already,
    /// so a failure is logged, not answered: the object stays (and a link handed out
    /// before the delete keeps working until it expires), nothing else goes wrong.
    pub async fn remove(&self, files: &[Attachment]) {
        for file in files {
            if let Err(e) = self.store.delete(&file.key).await {
                tracing::warn!(key = %file.key, error = %e, "could not remove a deleted message's file");
            }
        }
    }

    /// The URL of a file of `room`, valid from `now` (Unix seconds) for the link TTL:
    /// `<GATEWAY_PUBLIC_URL>/api/chat/<room>/files/<signed token>`.
    pub fn url(&self, room: &RoomId, a: &Attachment, now: i64) -> String {
        let claims = LinkClaims {
            room: room.clone(),
            key: a.key.clone(),
            filename: a.filename.clone(),
            mime_type: a.mime_type.clone(),
            exp: 0,
        };
        format!("{}/api/chat/{room}/files/{}", self.public_url, self.links.sign_for(claims, now))
    }
}

/// The links the dialects put in attachments' `url`: signed when the message is
/// rendered, valid for the link TTL from then.
pub struct SignedLinks<'a> {
    attachments: &'a Attachments,
    now: i64,
}

impl<'a> SignedLinks<'a> {
    pub fn new(attachments: &'a Attachments) -> Self {
        Self { attachments, now: chrono::Utc::now().timestamp() }
    }
}

impl AttachmentLinks for SignedLinks<'_> {
    fn url(&self, message: &Message, attachment: &Attachment) -> String {
        self.attachments.url(&message.room_id, attachment, self.now)
    }
}
