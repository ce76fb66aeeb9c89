//! Refresh tokens, kept in the shared cache so that any instance of the
//! user service can rotate what another issued.
//!
//! A token is stored as its digest with the user and the family (one
//! sign-in) it belongs to. Rotating marks it used, once: of two requests
//! presenting the same token, one wins. A token presented after it was used
//! has leaked (someone else holds its successor), so its whole family is
//! revoked.

use std::time::Duration;

use buildstream_backend::SharedCache;
use buildstream_service::ApiError;

/// How long a refresh token stays valid without use.
pub const REFRESH_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// The refresh tokens of every user.
#[derive(Clone)]
pub struct RefreshTokens {
    cache: SharedCache,
}

impl RefreshTokens {
    /// Tokens kept in `cache`.
    pub fn new(cache: SharedCache) -> Self {
        Self { cache }
    }

    /// Stores a new token (by its digest) of `family`.
    pub async fn store(&self, digest: &str, user_id: &str, family: &str) -> Result<(), ApiError> {
        self.cache
            .set(
                &token_key(digest),
                &format!("{user_id} {family}"),
                REFRESH_TOKEN_TTL,
            )
            .await?;
        Ok(())
    }

    /// Uses up a token and returns its user and family, so that the caller
    /// can issue the next one of the family.
    pub async fn rotate(&self, digest: &str) -> Result<(String, String), ApiError> {
        let refused = || ApiError::unauthorized("invalid refresh token");
        let (user_id, family) = self.lookup(digest).await?.ok_or_else(refused)?;
        if self.cache.get(&revoked_key(&family)).await?.is_some() {
            return Err(refused());
        }
        let first_use = self
            .cache
            .set_if_absent(&used_key(digest), "1", REFRESH_TOKEN_TTL)
            .await?;
        if !first_use {
            self.revoke(&family).await?;
            tracing::warn!(user = %user_id, "refresh token replayed; family revoked");
            return Err(refused());
        }
        Ok((user_id, family))
    }

    /// Revokes every token of the family this token belongs to (sign-out).
    /// An unknown token is no error: signing out twice is harmless.
    pub async fn revoke_family_of(&self, digest: &str) -> Result<(), ApiError> {
        if let Some((_, family)) = self.lookup(digest).await? {
            self.revoke(&family).await?;
        }
        Ok(())
    }

    async fn lookup(&self, digest: &str) -> Result<Option<(String, String)>, ApiError> {
        let stored = self.cache.get(&token_key(digest)).await?;
        Ok(stored.and_then(|value| {
            let (user, family) = value.split_once(' ')?;
            Some((user.to_owned(), family.to_owned()))
        }))
    }

    async fn revoke(&self, family: &str) -> Result<(), ApiError> {
        // No token of the family outlives the last one issued, so neither
        // need the mark.
        self.cache
            .set(&revoked_key(family), "1", REFRESH_TOKEN_TTL)
            .await?;
        Ok(())
    }
}

fn token_key(digest: &str) -> String {
    format!("refresh:{digest}")
}

fn used_key(digest: &str) -> String {
    format!("refresh-used:{digest}")
}

fn revoked_key(family: &str) -> String {
    format!("refresh-revoked:{family}")
}
