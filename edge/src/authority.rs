//! Who may publish: stream keys checked against the control plane.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Checks stream keys. The control plane implements it over HTTP; tests and
/// `dev` use [`MemoryKeyAuthority`].
pub trait KeyAuthority: Send + Sync + 'static {
    /// Resolves a stream key to the studio source it publishes as.
    fn authorize(
        &self,
        stream_key: &str,
    ) -> impl Future<Output = Result<SourceGrant, AuthorizeError>> + Send;
}

impl<T: KeyAuthority> KeyAuthority for Arc<T> {
    fn authorize(
        &self,
        stream_key: &str,
    ) -> impl Future<Output = Result<SourceGrant, AuthorizeError>> + Send {
        (**self).authorize(stream_key)
    }
}

/// The source a valid stream key publishes as: its tracks are
/// `studio/{studio}/{source}/{video,audio}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SourceGrant {
    /// The studio id.
    pub studio: String,
    /// The source id within the studio.
    pub source: String,
}

/// Why a stream key was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizeError {
    /// The key is unknown or revoked; the publisher is told so.
    #[error("stream key refused")]
    Refused,
    /// The key could not be checked (control plane down, timeout); the
    /// publisher is told to retry.
    #[error("stream key could not be checked: {0}")]
    Unavailable(String),
}

/// An in-memory key map. Keys are held as SHA-256 digests and every lookup
/// compares against all of them in constant time, so neither the time taken
/// nor memory dumps reveal key material.
#[derive(Default)]
pub struct MemoryKeyAuthority {
    keys: RwLock<Vec<([u8; 32], SourceGrant)>>,
}

impl MemoryKeyAuthority {
    /// An authority that refuses every key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets `stream_key` publish as `grant`, replacing an earlier grant.
    pub fn insert(&self, stream_key: &str, grant: SourceGrant) {
        let digest = digest(stream_key);
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        keys.retain(|(known, _)| *known != digest);
        keys.push((digest, grant));
    }

    /// Revokes `stream_key`; publishers already live are not affected.
    pub fn remove(&self, stream_key: &str) {
        let digest = digest(stream_key);
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        keys.retain(|(known, _)| *known != digest);
    }

    fn lookup(&self, stream_key: &str) -> Option<SourceGrant> {
        let digest = digest(stream_key);
        let keys = self
            .keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut found = None;
        // No early exit: every entry is compared whatever matched.
        for (known, grant) in keys.iter() {
            if bool::from(known.ct_eq(&digest)) {
                found = Some(grant.clone());
            }
        }
        found
    }
}

impl KeyAuthority for MemoryKeyAuthority {
    async fn authorize(&self, stream_key: &str) -> Result<SourceGrant, AuthorizeError> {
        self.lookup(stream_key).ok_or(AuthorizeError::Refused)
    }
}

impl<const N: usize> From<[(&str, SourceGrant); N]> for MemoryKeyAuthority {
    fn from(entries: [(&str, SourceGrant); N]) -> Self {
        let authority = Self::new();
        for (key, grant) in entries {
            authority.insert(key, grant);
        }
        authority
    }
}

/// A stream key as logs may show it: the first four bytes of its SHA-256,
/// enough to tell keys apart, useless to publish with.
pub(crate) struct KeyFingerprint([u8; 4]);

impl KeyFingerprint {
    pub(crate) fn of(stream_key: &str) -> Self {
        let digest = digest(stream_key);
        Self([digest[0], digest[1], digest[2], digest[3]])
    }
}

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

fn digest(stream_key: &str) -> [u8; 32] {
    Sha256::digest(stream_key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(source: &str) -> SourceGrant {
        SourceGrant {
            studio: "studio-1".to_owned(),
            source: source.to_owned(),
        }
    }

    #[tokio::test]
    async fn resolves_known_keys_and_refuses_others() {
        let authority = MemoryKeyAuthority::from([("key-a", grant("a")), ("key-b", grant("b"))]);
        assert_eq!(authority.authorize("key-b").await, Ok(grant("b")));
        assert_eq!(
            authority.authorize("key-c").await,
            Err(AuthorizeError::Refused)
        );
        assert_eq!(
            authority.authorize("key-").await,
            Err(AuthorizeError::Refused)
        );
        assert_eq!(authority.authorize("").await, Err(AuthorizeError::Refused));

        authority.insert("key-a", grant("moved"));
        assert_eq!(authority.authorize("key-a").await, Ok(grant("moved")));
        authority.remove("key-a");
        assert_eq!(
            authority.authorize("key-a").await,
            Err(AuthorizeError::Refused)
        );
    }

    #[tokio::test]
    async fn shared_authority_is_an_authority() {
        let authority = Arc::new(MemoryKeyAuthority::from([("k", grant("a"))]));
        assert_eq!(authority.authorize("k").await, Ok(grant("a")));
    }

    #[test]
    fn fingerprint_hides_the_key() {
        let shown = KeyFingerprint::of("live_123456_secret").to_string();
        assert_eq!(shown.len(), 8);
        assert!(!shown.contains("secret"));
        assert_ne!(shown, KeyFingerprint::of("live_123456_secreT").to_string());
    }
}
