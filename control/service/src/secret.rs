//! Bearer secrets (stream keys, refresh tokens): generated with 160 bits of
//! randomness, shown to their owner once, stored only as a SHA-256 digest.

use rand::RngExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Random bytes in a new secret: 160 bits, above the 128 a guess must beat.
const SECRET_BYTES: usize = 20;

/// A new secret: `prefix` followed by 40 hex characters.
pub fn generate(prefix: &str) -> String {
    let bytes: [u8; SECRET_BYTES] = rand::rng().random();
    format!("{prefix}{}", hex::encode(bytes))
}

/// The digest stored in place of a secret, hex encoded.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` matches a stored digest, compared in constant time so
/// the comparison leaks nothing about how much of it matched.
pub fn matches(secret: &str, stored_digest: &str) -> bool {
    digest(secret)
        .as_bytes()
        .ct_eq(stored_digest.as_bytes())
        .into()
}

/// A short, non-reversible tag for logs: enough to tell two keys apart,
/// useless to an attacker.
pub fn log_tag(secret: &str) -> String {
    digest(secret)[..8].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_their_digest() {
        let key = generate("live_");
        assert_eq!(key.len(), 5 + 40);
        let stored = digest(&key);
        assert!(matches(&key, &stored));
        assert!(!matches(&generate("live_"), &stored));
        assert!(!matches("", &stored));
    }

    #[test]
    fn log_tag_does_not_contain_the_secret() {
        let key = generate("live_");
        assert!(!key.contains(&log_tag(&key)) || log_tag(&key).len() < 40);
    }
}
