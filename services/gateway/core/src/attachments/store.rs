//! The object store behind attachments: one interface ([`Store`], over the
//! `object_store` crate) for local disk and any S3-compatible service, chosen by
//! configuration ([`StoreConfig`]).
//!
//! Keys are `<tenant>/<chat>/<random>`: tenant and chat first so that nothing collides
//! across tenants and a chat's files can be listed (or removed) by prefix; the random
//! part is 128 bits, so a key cannot be guessed (though a key alone never opens a file:
//! links are signed, see `links.rs`).
//!
//! Writes go through `object_store`'s `BufWriter`: a file smaller than
//! [`PART_BYTES`] is one `PUT`, a larger one a multipart upload of parts that size.
//! Either way nothing is visible under the key until the write completes, and an
//! aborted write leaves nothing behind (the multipart upload is aborted, the local
//! staging file removed).

use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use chat_domain::ids::{RoomId, TenantId};
use futures_util::{Stream, TryStreamExt as _};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};

/// Size of the parts of a multipart upload, and the most a write buffers before it
/// starts one (S3's smallest allowed part is 5 MiB).
pub const PART_BYTES: usize = 5 * 1024 * 1024;

/// Where attachments are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// A directory on local disk (created when missing).
    Local(std::path::PathBuf),
    /// A bucket of an S3-compatible service.
    S3(S3Config),
}

/// An S3-compatible bucket. Credentials left out are looked for the way AWS SDKs do
/// (instance metadata, web identity: e.g. IRSA on Kubernetes).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct S3Config {
    pub bucket: String,
    /// Keys are stored under this prefix inside the bucket (may be empty).
    pub prefix: String,
    /// The service's URL, for anything but AWS itself (MinIO, Ceph, R2, ...).
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// `https://host/bucket/key` rather than `https://bucket.host/key`: what most
    /// self-hosted services need.
    pub path_style: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("path_style", &self.path_style)
            .finish_non_exhaustive()
    }
}

impl StoreConfig {
    /// Parses `GATEWAY_ATTACHMENTS`: `file:///absolute/dir`, a plain directory path, or
    /// `s3://bucket[/prefix]` (the rest of an S3 configuration comes from `s3`).
    pub fn parse(location: &str, s3: impl FnOnce(String, String) -> S3Config) -> anyhow::Result<Self> {
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            anyhow::ensure!(!bucket.is_empty(), "GATEWAY_ATTACHMENTS: s3:// needs a bucket name");
            return Ok(Self::S3(s3(bucket.to_owned(), prefix.trim_matches('/').to_owned())));
        }
        let dir = location.strip_prefix("file://").unwrap_or(location);
        anyhow::ensure!(!dir.is_empty(), "GATEWAY_ATTACHMENTS: empty directory");
        anyhow::ensure!(
            !location.contains("://") || location.starts_with("file://"),
            "GATEWAY_ATTACHMENTS must be file://<dir> or s3://<bucket>[/prefix], not {location}"
        );
        Ok(Self::Local(dir.into()))
    }
}

/// The attachments' object store (cheap to clone).
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
}

impl Store {
    /// Opens the store (creating a local directory when missing; an S3 bucket must exist).
    pub fn open(config: &StoreConfig) -> anyhow::Result<Self> {
        let inner: Arc<dyn ObjectStore> = match config {
            StoreConfig::Local(dir) => {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                let local = object_store::local::LocalFileSystem::new_with_prefix(dir)
                    .with_context(|| format!("opening {}", dir.display()))?
                    // Removing a chat's last file removes its then empty directory too.
                    .with_automatic_cleanup(true);
                Arc::new(local)
            }
            StoreConfig::S3(s3) => {
                // reqwest's rustls is built without a bundled crypto provider (to keep a
                // second, C-built one out of the tree); use ring, as the rest of the
                // process does. Already installed is fine.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let mut b = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_virtual_hosted_style_request(!s3.path_style);
                if let Some(endpoint) = &s3.endpoint {
                    b = b.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
                }
                if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
                    b = b.with_access_key_id(id).with_secret_access_key(secret);
                }
                if let Some(token) = &s3.session_token {
                    b = b.with_token(token);
                }
                let bucket = b.build().with_context(|| format!("configuring S3 bucket {}", s3.bucket))?;
                if s3.prefix.is_empty() {
                    Arc::new(bucket)
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(bucket, s3.prefix.as_str()))
                }
            }
        };
        Ok(Self { inner })
    }

    /// A fresh key for a file of `room`.
    pub fn new_key(tenant: &TenantId, room: &RoomId) -> String {
        let mut id = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut id);
        format!("{tenant}/{room}/{}", hex::encode(id))
    }

    /// Starts writing `key`; nothing is visible under it until [`Writer::finish`].
    pub fn writer(&self, key: &str) -> anyhow::Result<Writer> {
        let path = Path::parse(key).with_context(|| format!("object key {key}"))?;
        Ok(Writer { inner: BufWriter::with_capacity(self.inner.clone(), path, PART_BYTES), written: 0 })
    }

    /// The object's size and its bytes as a stream; `None` when there is no such object.
    pub async fn read(
        &self,
        key: &str,
    ) -> anyhow::Result<Option<(u64, impl Stream<Item = anyhow::Result<Bytes>> + use<>)>> {
        let path = Path::parse(key).with_context(|| format!("object key {key}"))?;
        match self.inner.get(&path).await {
            Ok(got) => {
                let size = got.meta.size;
                Ok(Some((size, got.into_stream().map_err(anyhow::Error::from))))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(anyhow::Error::from(e).context(format!("reading {key}"))),
        }
    }

    /// Removes an object (missing is fine).
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let path = Path::parse(key).with_context(|| format!("object key {key}"))?;
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(anyhow::Error::from(e).context(format!("deleting {key}"))),
        }
    }

    /// The keys stored under `prefix` (e.g. `<tenant>/<chat>`), for operators and tests.
    pub async fn list(&self, prefix: &str) -> anyhow::Result<Vec<String>> {
        let prefix = Path::parse(prefix).with_context(|| format!("prefix {prefix}"))?;
        let metas: Vec<_> = self.inner.list(Some(&prefix)).try_collect().await.context("listing objects")?;
        Ok(metas.into_iter().map(|m| m.location.to_string()).collect())
    }
}

/// A write in progress: [`Writer::finish`] makes it visible, [`Writer::abort`] (or an
/// error) leaves nothing behind.
#[derive(Debug)]
pub struct Writer {
    inner: BufWriter,
    written: u64,
}

impl Writer {
    /// Appends a chunk.
    pub async fn put(&mut self, chunk: Bytes) -> anyhow::Result<()> {
        self.written += chunk.len() as u64;
        self.inner.put(chunk).await.context("writing an attachment")
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Completes the write.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        tokio::io::AsyncWriteExt::shutdown(&mut self.inner).await.context("completing an attachment")
    }

    /// Abandons the write, removing whatever was uploaded.
    pub async fn abort(mut self) {
        if let Err(e) = self.inner.abort().await {
            tracing::warn!(error = format!("{e:#}"), "aborting an attachment upload left parts behind");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() -> anyhow::Result<()> {
        let s3 = |bucket, prefix| S3Config { bucket, prefix, region: "r".into(), ..S3Config::default() };
        assert_eq!(StoreConfig::parse("file:///var/chat", s3)?, StoreConfig::Local("/var/chat".into()));
        assert_eq!(StoreConfig::parse(".dev/attachments", s3)?, StoreConfig::Local(".dev/attachments".into()));
        let StoreConfig::S3(c) = StoreConfig::parse("s3://files/chat/prod/", s3)? else { anyhow::bail!("not s3") };
        assert_eq!((c.bucket.as_str(), c.prefix.as_str()), ("files", "chat/prod"));
        assert!(StoreConfig::parse("s3://", s3).is_err());
        assert!(StoreConfig::parse("gs://bucket", s3).is_err());
        Ok(())
    }

    #[tokio::test]
    async fn an_aborted_write_leaves_nothing() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("chat-store-test-{}", std::process::id()));
        let store = Store::open(&StoreConfig::Local(dir.clone()))?;
        let mut w = store.writer("t/r/aborted")?;
        w.put(Bytes::from_static(b"half")).await?;
        w.abort().await;
        let mut w = store.writer("t/r/kept")?;
        w.put(Bytes::from_static(b"whole")).await?;
        w.finish().await?;
        assert_eq!(store.list("t/r").await?, vec!["t/r/kept".to_owned()]);
        store.delete("t/r/kept").await?;
        store.delete("t/r/kept").await?;
        assert!(store.read("t/r/kept").await?.is_none());
        let _ = std::fs::remove_dir_all(dir);
        Ok(())
    }
}
