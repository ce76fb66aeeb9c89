//! Random identifiers, URL- and track-name-safe.

use rand::RngExt;

/// A new random identifier: 16 lowercase hex characters after a short
/// prefix naming what it identifies (`st_` studio, `src_` source, ...), so
/// an id pasted into a log or a ticket says what it is.
pub fn random(prefix: &str) -> String {
    let bytes: [u8; 8] = rand::rng().random();
    format!("{prefix}{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_prefixed_and_unique() {
        let a = super::random("st_");
        let b = super::random("st_");
        assert!(a.starts_with("st_"));
        assert_eq!(a.len(), 3 + 16);
        assert_ne!(a, b);
    }
}
