//! User storage.

use buildstream_backend::Database;
use buildstream_service::ApiError;
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

/// The users table, in SQLite or MySQL.
#[derive(Clone)]
pub struct Users {
    db: Database,
}

impl Users {
    /// Users stored in `db` (already migrated).
    pub fn new(db: Database) -> Self {
        Self { db }
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
        .execute(self.db.pool())
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
                .fetch_optional(self.db.pool())
                .await?,
        )
    }

    /// The user with this e-mail, compared case-insensitively.
    pub async fn by_email(&self, email: &str) -> Result<Option<User>, ApiError> {
        Ok(
            sqlx::query_as::<_, User>("SELECT * FROM users WHERE email = ?")
                .bind(email)
                .fetch_optional(self.db.pool())
                .await?,
        )
    }
}

fn now_rfc3339() -> String {
    // Formatting a UTC timestamp as RFC 3339 cannot fail for years 0-9999.
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}
