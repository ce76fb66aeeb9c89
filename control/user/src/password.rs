//! Argon2id password hashing, off the async runtime: a hash costs tens of
//! milliseconds of CPU by design.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use buildstream_service::ApiError;
use tokio::sync::Semaphore;

/// Hashes computed at once. Each takes 19 MiB and a core for tens of
/// milliseconds; unbounded, a burst of sign-ins exhausts memory.
static HASHING: Semaphore = Semaphore::const_new(4);

/// A valid Argon2id hash of a random password nobody knows, verified against
/// when the e-mail is unknown so that both cases cost the same.
pub const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$2p1cPq0XyBjUm0sDr2uPAAgGHnbK1UBbXY8pYtJcJ8k";

/// Checks length limits: at least 8 characters, at most 1024 bytes (Argon2
/// accepts more, but a megabyte password is an attack, not a password).
pub fn validate(password: &str) -> Result<(), ApiError> {
    if password.chars().count() < 8 || password.len() > 1024 {
        return Err(ApiError::invalid(
            "weak_password",
            "password must be 8 to 1024 characters",
        ));
    }
    Ok(())
}

/// Hashes a password with Argon2id and a random salt.
pub async fn hash(password: String) -> Result<String, ApiError> {
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|err| ApiError::internal(format!("hashing permit: {err}")))?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|err| ApiError::internal(format!("hashing password: {err}")))
    })
    .await
    .map_err(|err| ApiError::internal(format!("hashing task: {err}")))?
}

/// Whether `password` matches the stored PHC hash string.
pub async fn verify(password: String, stored: String) -> Result<bool, ApiError> {
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|err| ApiError::internal(format!("hashing permit: {err}")))?;
    tokio::task::spawn_blocking(move || {
        let Ok(parsed) = PasswordHash::new(&stored) else {
            return false;
        };
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
    .await
    .map_err(|err| ApiError::internal(format!("verifying task: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_verifies_only_its_password() {
        let stored = hash("correct horse".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("correct horse".into(), stored.clone())
            .await
            .unwrap());
        assert!(!verify("wrong horse".into(), stored).await.unwrap());
    }

    #[tokio::test]
    async fn decoy_hash_parses_and_rejects() {
        assert!(PasswordHash::new(DECOY_HASH).is_ok());
        assert!(!verify("anything at all".into(), DECOY_HASH.into())
            .await
            .unwrap());
    }
}
