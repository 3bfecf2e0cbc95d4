//! Replay protection: the [`ReplayGuard`] trait (the runtime implements it on its database) and
//! a bounded in-memory implementation, [`InMemoryReplayGuard`].

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::scheme::SchemeKind;

/// A 32-byte digest identifying one delivery for the replay cache.
///
/// - Standard Webhooks: a digest of the `webhook-id` (stable across the sender's retries: the
///   idempotency key of the spec).
/// - Every other scheme: a digest of the verified HMAC tag, i.e. of exactly the signed content
///   (Stripe `t` + body, HubSpot method + decoded URL + body + timestamp, Airtable and plain
///   HMAC the body). It is canonical: no header byte can be changed (an extra `v0=`, spaces,
///   a re-encoded URL) to produce a new key without also breaking the signature.
///
/// The scheme's name is part of the digest, so keys of different schemes never collide.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReplayKey([u8; 32]);

impl ReplayKey {
    pub(crate) fn digest(scheme: SchemeKind, content: &[u8]) -> Self {
        let digest = Sha256::new()
            .chain_update(scheme.as_str().as_bytes())
            .chain_update([0u8])
            .chain_update(content)
            .finalize();
        Self(digest.into())
    }

    /// Rebuilds a key read back from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The raw digest, for storage.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Lowercase hex, 64 characters.
impl fmt::Display for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for ReplayKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReplayKey({self})")
    }
}

/// The answer of a [`ReplayGuard`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Freshness {
    /// First time inside its window: the key is now remembered until it expires.
    Fresh,
    /// Already seen, and its entry has not expired.
    Replayed,
}

/// A replay store could not answer (a database error, …). Turn it into a 5xx so the sender
/// retries; do not treat the delivery as fresh.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ReplayError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl ReplayError {
    /// An error with a message only.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// An error caused by a backend error, kept as the source.
    pub fn with_source(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// The future a [`ReplayGuard`] returns: boxed so the trait stays object-safe
/// (`Arc<dyn ReplayGuard>` works) and `Send` so it can be awaited in a server task.
pub type ReplayFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Freshness, ReplayError>> + Send + 'a>>;

/// Remembers accepted deliveries per installation until their window closes, and says whether
/// one was seen before.
///
/// Implementations must make check-and-insert **atomic** per `(installation, key)`: two
/// concurrent calls with the same key must not both answer [`Freshness::Fresh`] (a database
/// does this with a unique index and `INSERT … ON CONFLICT DO NOTHING`, counting rows).
/// An entry whose `expires_at` is before `now` counts as absent and may be dropped.
///
/// ```
/// use ivory_sdk::webhook::{Freshness, ReplayError, ReplayFuture, ReplayGuard, ReplayKey};
/// use jiff::Timestamp;
///
/// /// A guard that remembers nothing: every delivery is fresh (what a stateless CLI does).
/// #[derive(Debug)]
/// struct NoReplayCache;
///
/// impl ReplayGuard for NoReplayCache {
///     fn check_and_remember<'a>(
///         &'a self,
///         _installation: &'a str,
///         _key: ReplayKey,
///         _expires_at: Timestamp,
///         _now: Timestamp,
///     ) -> ReplayFuture<'a> {
///         Box::pin(std::future::ready(Ok::<_, ReplayError>(Freshness::Fresh)))
///     }
/// }
///
/// let guard: std::sync::Arc<dyn ReplayGuard> = std::sync::Arc::new(NoReplayCache);
/// # let _ = guard;
/// ```
pub trait ReplayGuard: Send + Sync {
    /// Atomically: answer [`Freshness::Replayed`] if `key` is remembered for `installation` and
    /// its entry has not expired at `now`; otherwise remember it until `expires_at` and answer
    /// [`Freshness::Fresh`].
    fn check_and_remember<'a>(
        &'a self,
        installation: &'a str,
        key: ReplayKey,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> ReplayFuture<'a>;
}

impl<G: ReplayGuard + ?Sized> ReplayGuard for Arc<G> {
    fn check_and_remember<'a>(
        &'a self,
        installation: &'a str,
        key: ReplayKey,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> ReplayFuture<'a> {
        (**self).check_and_remember(installation, key, expires_at, now)
    }
}

/// A bounded, in-memory [`ReplayGuard`], keyed per installation: for one process (tests, the
/// demo, a single-node server). Entries are lost on restart; use the store-backed guard of the
/// runtime when deliveries may arrive at several processes.
///
/// When it is full, inserting first drops every expired entry, then the oldest inserted entries
/// until there is room. Expired entries are also dropped on every call, so memory follows the
/// traffic of the last window. Every operation is O(log n).
///
/// ```
/// use ivory_sdk::webhook::{Freshness, InMemoryReplayGuard, ReplayKey};
/// use jiff::{SignedDuration, Timestamp};
///
/// let guard = InMemoryReplayGuard::with_capacity(10_000);
/// let now = Timestamp::from_second(1_700_000_000)?;
/// let key = ReplayKey::from_bytes([1; 32]);
/// let expires = now + SignedDuration::from_secs(300);
/// assert_eq!(guard.check_and_remember_sync("inst-1", key, expires, now), Freshness::Fresh);
/// assert_eq!(guard.check_and_remember_sync("inst-1", key, expires, now), Freshness::Replayed);
/// // Another installation has its own cache.
/// assert_eq!(guard.check_and_remember_sync("inst-2", key, expires, now), Freshness::Fresh);
/// # Ok::<(), jiff::Error>(())
/// ```
pub struct InMemoryReplayGuard {
    capacity: usize,
    inner: Mutex<Entries>,
}

impl InMemoryReplayGuard {
    /// The default capacity: 65,536 entries in total, about 10 MiB.
    pub const DEFAULT_CAPACITY: usize = 65_536;

    /// A guard holding at most `capacity` entries across all installations (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            inner: Mutex::new(Entries::default()),
        }
    }

    /// The synchronous form of [`ReplayGuard::check_and_remember`].
    pub fn check_and_remember_sync(
        &self,
        installation: &str,
        key: ReplayKey,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Freshness {
        let mut entries = self.lock();
        entries.drop_expired(now);
        let slot = (Arc::<str>::from(installation), key);
        if entries.by_key.contains_key(&slot) {
            // Not expired: `drop_expired` just removed every entry with `expires_at < now`.
            return Freshness::Replayed;
        }
        while entries.by_key.len() >= self.capacity {
            if !entries.drop_oldest() {
                break;
            }
        }
        entries.insert(slot, expires_at);
        Freshness::Fresh
    }

    /// How many entries are held (expired ones included until the next call drops them).
    pub fn len(&self) -> usize {
        self.lock().by_key.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The maximum number of entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Drops every entry of one installation (on uninstall).
    pub fn forget_installation(&self, installation: &str) {
        let mut entries = self.lock();
        let doomed: Vec<Slot> = entries
            .by_key
            .keys()
            .filter(|(inst, _)| &**inst == installation)
            .cloned()
            .collect();
        for slot in doomed {
            entries.remove(&slot);
        }
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // A panic while holding the lock cannot leave `Entries` half-updated in a way that
        // matters for safety (at worst an index entry is missing), so poisoning is ignored.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for InMemoryReplayGuard {
    fn default() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }
}

impl fmt::Debug for InMemoryReplayGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryReplayGuard")
            .field("capacity", &self.capacity)
            .field("len", &self.len())
            .finish()
    }
}

impl ReplayGuard for InMemoryReplayGuard {
    fn check_and_remember<'a>(
        &'a self,
        installation: &'a str,
        key: ReplayKey,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> ReplayFuture<'a> {
        let answer = self.check_and_remember_sync(installation, key, expires_at, now);
        Box::pin(std::future::ready(Ok(answer)))
    }
}

type Slot = (Arc<str>, ReplayKey);

/// The three indexes of the in-memory guard, kept in step.
#[derive(Default)]
struct Entries {
    /// slot → (insertion sequence, expiry)
    by_key: HashMap<Slot, (u64, Timestamp)>,
    /// (expiry, sequence): expired entries first.
    by_expiry: BTreeSet<(Timestamp, u64)>,
    /// sequence → slot: oldest insertion first.
    by_age: std::collections::BTreeMap<u64, Slot>,
    next_seq: u64,
}

impl Entries {
    fn insert(&mut self, slot: Slot, expires_at: Timestamp) {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        self.by_expiry.insert((expires_at, seq));
        self.by_age.insert(seq, slot.clone());
        self.by_key.insert(slot, (seq, expires_at));
    }

    fn remove(&mut self, slot: &Slot) {
        if let Some((seq, expires_at)) = self.by_key.remove(slot) {
            self.by_expiry.remove(&(expires_at, seq));
            self.by_age.remove(&seq);
        }
    }

    /// Drops every entry whose expiry is before `now`.
    fn drop_expired(&mut self, now: Timestamp) {
        while let Some(&(expires_at, seq)) = self.by_expiry.first() {
            if expires_at >= now {
                break;
            }
            self.by_expiry.pop_first();
            if let Some(slot) = self.by_age.remove(&seq) {
                self.by_key.remove(&slot);
            }
        }
    }

    /// Drops the oldest inserted entry; `false` when there is none.
    fn drop_oldest(&mut self) -> bool {
        match self.by_age.pop_first() {
            Some((_, slot)) => {
                if let Some((seq, expires_at)) = self.by_key.remove(&slot) {
                    self.by_expiry.remove(&(expires_at, seq));
                }
                true
            }
            None => false,
        }
    }
}
