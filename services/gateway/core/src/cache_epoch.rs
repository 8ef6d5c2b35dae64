//! [`Epoch`]: what keeps a cache from keeping an answer read across a change.
//!
//! A cache's lookup goes over the bus; a change to what it caches (a rotated key, a new
//! token secret) may be announced — and the cache told to forget — while that lookup's
//! answer is still on its way. Stored then, the answer read before the change would be
//! trusted for a whole TTL after it. Each forget advances the cache's epoch; an answer
//! is stored only if the epoch did not move while it was being read (it is still used
//! once, by the caller that asked).

use std::sync::atomic::{AtomicU64, Ordering};

/// A count of a cache's forgets.
#[derive(Debug, Default)]
pub struct Epoch(AtomicU64);

impl Epoch {
    /// Where the epoch stands: taken before a lookup.
    pub fn now(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// A forget happened (call it under the cache's lock, with the forget).
    pub fn advance(&self) {
        self.0.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether no forget happened since `at` (check it under the cache's lock, before storing).
    pub fn unchanged_since(&self, at: u64) -> bool {
        self.now() == at
    }
}

/// For the caches' tests: a bus whose message-store is the test itself, so a lookup can
/// be held on its way while the test announces a change.
#[cfg(test)]
pub(crate) mod held {
    use std::time::Duration;

    use chat_bus::{Bus, Subjects, envelope};
    use chat_domain::ids::MessageId;
    use chat_domain::proto::Service;
    use futures_util::StreamExt as _;

    /// How long a test waits for a request or an answer.
    const WAIT: Duration = Duration::from_secs(30);

    /// A bus (own subject prefix) and the message-store requests sent on it.
    pub struct HeldStore {
        pub bus: Bus,
        client: async_nats::Client,
        requests: async_nats::Subscriber,
    }

    impl HeldStore {
        /// Subjects under `<prefix>-<unique>`.
        pub async fn start(prefix: &str) -> anyhow::Result<Self> {
            let url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned());
            let client = chat_bus::client::connect(&url, &format!("{prefix}-test")).await?;
            let id = MessageId::generate();
            let subjects = Subjects::new(&format!("{prefix}-{}", &id.as_str()[id.as_str().len() - 20..]))?;
            let bus = Bus::new(client.clone(), subjects.clone()).with_timeout(WAIT);
            let requests = client.subscribe(subjects.commands_of(Service::MessageStore)).await?;
            client.flush().await?;
            Ok(Self { bus, client, requests })
        }

        /// The next request, held until [`HeldStore::answer`].
        pub async fn next(&mut self) -> anyhow::Result<async_nats::Message> {
            tokio::time::timeout(WAIT, self.requests.next()).await?.ok_or_else(|| anyhow::anyhow!("subscription ended"))
        }

        /// The next request, or, when `lookup` finishes without asking (it answered from
        /// its cache), an error naming what it served.
        pub async fn asked_by<T: std::fmt::Debug>(
            &mut self,
            lookup: &mut tokio::task::JoinHandle<T>,
        ) -> anyhow::Result<async_nats::Message> {
            tokio::time::timeout(WAIT, async {
                tokio::select! {
                    r = self.requests.next() => r.ok_or_else(|| anyhow::anyhow!("subscription ended")),
                    served = lookup => anyhow::bail!("served from the cache without asking: {:?}", served?),
                }
            })
            .await?
        }

        /// The race each cache must survive: a lookup (`lookup`, answering what it
        /// read) held on its way while `forget` announces a change, then answered with
        /// `answer("old")`, answers "old"; the next lookup asks again (it is answered
        /// "new"; before the caches counted forgets it was served "old" from the cache),
        /// and the one after that is served "new" from the cache.
        pub async fn lookup_across_a_forget<R: serde::Serialize>(
            mut self,
            lookup: impl Fn() -> tokio::task::JoinHandle<Result<String, chat_domain::ApiError>>,
            forget: impl FnOnce(),
            answer: impl Fn(&str) -> R,
        ) -> anyhow::Result<()> {
            let first = lookup();
            let held = self.next().await?;
            forget();
            self.answer(held, &answer("old")).await?;
            assert_eq!(first.await??, "old", "the lookup in flight answers with what it read");

            let mut second = lookup();
            let asked = self.asked_by(&mut second).await?;
            self.answer(asked, &answer("new")).await?;
            assert_eq!(second.await??, "new");
            assert_eq!(lookup().await??, "new", "the answer read after the change is cached");
            Ok(())
        }

        /// Answers `request` with `reply`.
        pub async fn answer<R: serde::Serialize>(&self, request: async_nats::Message, reply: &R) -> anyhow::Result<()> {
            let to = request.reply.ok_or_else(|| anyhow::anyhow!("no reply subject"))?;
            Ok(self.client.publish(to, envelope::ok(reply)).await?)
        }
    }
}
