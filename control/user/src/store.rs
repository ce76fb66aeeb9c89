//! User and refresh-token storage.

use buildstream_service::ApiError;
use sqlx::SqlitePool;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A stored user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    /// User id.
    pub id: String,
    /// E-mail address as registered.
    pub email: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// Display name.
    pub display_name: String,
    /// RFC 3339 creation time.
    pub created_at: String,
}

/// The users table and its refresh tokens.
// TODO: a MySQL implementation behind a trait, with these queries tested on
// both; until then the user service runs on SQLite only.
#[derive(Clone)]
pub struct Users {
    pool: SqlitePool,
}

impl Users {
    /// Users stored in `pool` (already migrated).
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// Creates a user; 409 `email_taken` if the e-mail is registered.
    pub async fn create(
        &self,
        email: &str,
        password_hash: &str,
        display_name: &str,
    ) -> Result<User, ApiError> {
        let user = User {
            id: buildstream_service::id::random("u_"),
            email: email.to_owned(),
            password_hash: password_hash.to_owned(),
            display_name: display_name.to_owned(),
            created_at: now_rfc3339(),
        };
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, password_hash, display_name, created_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(&user.display_name)
        .bind(&user.created_at)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(user),
            Err(sqlx::Error::Database(err)) if err.is_unique_violation() => Err(
                ApiError::conflict("email_taken", "an account with this email exists"),
            ),
            Err(err) => Err(err.into()),
        }
    }

    /// The user with this id.
    pub async fn by_id(&self, id: &str) -> Result<Option<User>, ApiError> {
        Ok(
            sqlx::query_as::<_, User>("SELECT * FROM users WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// The user with this e-mail, compared case-insensitively.
    pub async fn by_email(&self, email: &str) -> Result<Option<User>, ApiError> {
        Ok(
            sqlx::query_as::<_, User>("SELECT * FROM users WHERE email = ?")
                .bind(email)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// Stores a new refresh token of `family`.
    pub async fn store_refresh_token(
        &self,
        digest: &str,
        user_id: &str,
        family: &str,
        ttl_secs: i64,
    ) -> Result<(), ApiError> {
        let expires_at = OffsetDateTime::now_utc().unix_timestamp() + ttl_secs;
        sqlx::query(
            "INSERT INTO refresh_tokens (digest, user_id, family, expires_at) VALUES (?, ?, ?, ?)",
        )
        .bind(digest)
        .bind(user_id)
        .bind(family)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks a refresh token used and returns its user and family, so the
    /// caller can issue the next one. A token used before revokes its family.
    pub async fn rotate_refresh_token(&self, digest: &str) -> Result<(String, String), ApiError> {
        let refused = || ApiError::unauthorized("invalid refresh token");
        // IMMEDIATE: the transaction writes after reading, and SQLite cannot
        // upgrade a reader to a writer while another writer is active; it
        // would fail at once rather than wait out the busy timeout.
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let row: Option<(String, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT user_id, family, expires_at, used, revoked FROM refresh_tokens WHERE digest = ?",
        )
        .bind(digest)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((user_id, family, expires_at, used, revoked)) = row else {
            return Err(refused());
        };
        if revoked != 0 || expires_at < OffsetDateTime::now_utc().unix_timestamp() {
            return Err(refused());
        }
        if used != 0 {
            sqlx::query("UPDATE refresh_tokens SET revoked = 1 WHERE family = ?")
                .bind(&family)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::warn!(user = %user_id, "refresh token replayed; family revoked");
            return Err(refused());
        }
        sqlx::query("UPDATE refresh_tokens SET used = 1 WHERE digest = ?")
            .bind(digest)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok((user_id, family))
    }

    /// Revokes every token of the family this token belongs to (sign-out).
    pub async fn revoke_family_of(&self, digest: &str) -> Result<(), ApiError> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked = 1
             WHERE family = (SELECT family FROM refresh_tokens WHERE digest = ?)",
        )
        .bind(digest)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

fn now_rfc3339() -> String {
    // Formatting a UTC timestamp as RFC 3339 cannot fail for years 0-9999.
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}
