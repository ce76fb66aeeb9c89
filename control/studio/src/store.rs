//! Studios, sources, destinations and broadcasts in SQLite or MySQL.

use buildstream_backend::{Database, DbError, Dialect, Migrations};
use buildstream_service::ApiError;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::scene::Scene;

/// A stored studio.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StudioRow {
    /// Studio id.
    pub id: String,
    /// Owning user.
    pub owner_id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Tags as a JSON array of lowercase words.
    pub tags: String,
    /// Output width in pixels.
    pub output_width: i64,
    /// Output height in pixels.
    pub output_height: i64,
    /// Output frame rate.
    pub output_fps: i64,
    /// Scene as JSON.
    pub scene: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl StudioRow {
    /// The stored scene; a row written by this service always parses.
    pub fn scene(&self) -> Scene {
        serde_json::from_str(&self.scene).unwrap_or_default()
    }

    /// The stored tags.
    pub fn tags(&self) -> Vec<String> {
        serde_json::from_str(&self.tags).unwrap_or_default()
    }
}

/// A stored source (its key only as a digest).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SourceRow {
    /// Source id.
    pub id: String,
    /// Studio id.
    pub studio_id: String,
    /// `rtmp` or `whip` (encoders), `camera` or `screen` (a participant's
    /// browser).
    pub kind: String,
    /// Display name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A stored destination.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DestinationRow {
    /// Destination id.
    pub id: String,
    /// Studio id.
    pub studio_id: String,
    /// `youtube`, `twitch`, `facebook` or `custom`.
    pub platform: String,
    /// Display name.
    pub name: String,
    /// Ingest URL; empty for a platform preset's default.
    pub url: String,
    /// The platform's stream key.
    // TODO: encrypt at rest with a configured key; today anyone with the
    // database file can read every destination's stream key.
    pub stream_key: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A studio's broadcast while it is live.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BroadcastRow {
    /// Studio id.
    pub studio_id: String,
    /// The origin node composing it.
    pub origin_id: String,
    /// That origin's API base URL.
    pub origin_url: String,
    /// RFC 3339.
    pub started_at: String,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static MYSQL_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/mysql");

/// The studio service's schema, for each kind of database.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &SQLITE_MIGRATIONS,
    mysql: &MYSQL_MIGRATIONS,
};

/// The studio service's tables.
#[derive(Clone)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Runs migrations and returns the store.
    pub async fn open(db: Database) -> Result<Self, DbError> {
        db.migrate(MIGRATIONS).await?;
        Ok(Self { db })
    }

    /// The database, for readiness checks.
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// Inserts a studio.
    pub async fn insert_studio(&self, studio: &StudioRow) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO studios (id, owner_id, name, description, tags, output_width,
             output_height, output_fps, scene, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&studio.id)
        .bind(&studio.owner_id)
        .bind(&studio.name)
        .bind(&studio.description)
        .bind(&studio.tags)
        .bind(studio.output_width)
        .bind(studio.output_height)
        .bind(studio.output_fps)
        .bind(&studio.scene)
        .bind(&studio.created_at)
        .bind(&studio.updated_at)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// The owner's studio `id`; 404 when it does not exist or is someone
    /// else's, so that ids of other users' studios cannot be probed.
    pub async fn owned_studio(&self, owner: &str, id: &str) -> Result<StudioRow, ApiError> {
        sqlx::query_as::<_, StudioRow>("SELECT * FROM studios WHERE id = ? AND owner_id = ?")
            .bind(id)
            .bind(owner)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| ApiError::not_found("studio"))
    }

    /// Studio `id`, whoever owns it (for guests, whose tokens name it).
    pub async fn studio(&self, id: &str) -> Result<StudioRow, ApiError> {
        sqlx::query_as::<_, StudioRow>("SELECT * FROM studios WHERE id = ?")
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?
            .ok_or_else(|| ApiError::not_found("studio"))
    }

    /// Inserts a source, or renames it if it exists (a participant's camera
    /// keeps its id, and so its place on stage, across visits).
    pub async fn upsert_source(
        &self,
        source: &SourceRow,
        key_digest: &str,
    ) -> Result<(), ApiError> {
        let upsert = match self.db.dialect() {
            Dialect::Sqlite => {
                "INSERT INTO sources (id, studio_id, kind, name, key_digest, created_at)
                 VALUES (?, ?, ?, ?, ?, ?)
                 ON CONFLICT(id) DO UPDATE SET name = excluded.name"
            }
            Dialect::MySql => {
                "INSERT INTO sources (id, studio_id, kind, name, key_digest, created_at)
                 VALUES (?, ?, ?, ?, ?, ?)
                 ON DUPLICATE KEY UPDATE name = VALUES(name)"
            }
        };
        sqlx::query(upsert)
            .bind(&source.id)
            .bind(&source.studio_id)
            .bind(&source.kind)
            .bind(&source.name)
            .bind(key_digest)
            .bind(&source.created_at)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Every studio, for rebuilding the search index.
    pub async fn all_studios(&self) -> Result<Vec<StudioRow>, ApiError> {
        Ok(
            sqlx::query_as::<_, StudioRow>("SELECT * FROM studios ORDER BY id")
                .fetch_all(self.db.pool())
                .await?,
        )
    }

    /// Ids of every live studio.
    pub async fn live_studio_ids(&self) -> Result<Vec<String>, ApiError> {
        Ok(sqlx::query_scalar("SELECT studio_id FROM broadcasts")
            .fetch_all(self.db.pool())
            .await?)
    }

    /// The owner's studios, newest first.
    pub async fn studios_of(&self, owner: &str) -> Result<Vec<StudioRow>, ApiError> {
        Ok(sqlx::query_as::<_, StudioRow>(
            "SELECT * FROM studios WHERE owner_id = ? ORDER BY created_at DESC, id",
        )
        .bind(owner)
        .fetch_all(self.db.pool())
        .await?)
    }

    /// Writes back a studio's mutable fields.
    pub async fn update_studio(&self, studio: &StudioRow) -> Result<(), ApiError> {
        sqlx::query(
            "UPDATE studios SET name = ?, description = ?, tags = ?, output_width = ?,
             output_height = ?, output_fps = ?, scene = ?, updated_at = ? WHERE id = ?",
        )
        .bind(&studio.name)
        .bind(&studio.description)
        .bind(&studio.tags)
        .bind(studio.output_width)
        .bind(studio.output_height)
        .bind(studio.output_fps)
        .bind(&studio.scene)
        .bind(now_rfc3339())
        .bind(&studio.id)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Deletes a studio with its sources, destinations and broadcast.
    pub async fn delete_studio(&self, id: &str) -> Result<(), ApiError> {
        sqlx::query("DELETE FROM studios WHERE id = ?")
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Inserts a source with its key digest.
    pub async fn insert_source(
        &self,
        source: &SourceRow,
        key_digest: &str,
    ) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO sources (id, studio_id, kind, name, key_digest, created_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&source.id)
        .bind(&source.studio_id)
        .bind(&source.kind)
        .bind(&source.name)
        .bind(key_digest)
        .bind(&source.created_at)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// A studio's sources, oldest first.
    pub async fn sources_of(&self, studio: &str) -> Result<Vec<SourceRow>, ApiError> {
        Ok(sqlx::query_as::<_, SourceRow>(
            "SELECT id, studio_id, kind, name, created_at FROM sources
             WHERE studio_id = ? ORDER BY created_at, id",
        )
        .bind(studio)
        .fetch_all(self.db.pool())
        .await?)
    }

    /// Replaces a source's key digest; false if no such source.
    pub async fn set_source_key(
        &self,
        studio: &str,
        source: &str,
        key_digest: &str,
    ) -> Result<bool, ApiError> {
        let done = sqlx::query("UPDATE sources SET key_digest = ? WHERE id = ? AND studio_id = ?")
            .bind(key_digest)
            .bind(source)
            .bind(studio)
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Deletes a source; false if no such source.
    pub async fn delete_source(&self, studio: &str, source: &str) -> Result<bool, ApiError> {
        let done = sqlx::query("DELETE FROM sources WHERE id = ? AND studio_id = ?")
            .bind(source)
            .bind(studio)
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The source whose key has this digest, with its stored digest.
    pub async fn source_by_key_digest(
        &self,
        digest: &str,
    ) -> Result<Option<(SourceRow, String)>, ApiError> {
        let row: Option<(String, String, String, String, String, String)> = sqlx::query_as(
            "SELECT id, studio_id, kind, name, created_at, key_digest FROM sources
             WHERE key_digest = ?",
        )
        .bind(digest)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(
            row.map(|(id, studio_id, kind, name, created_at, key_digest)| {
                (
                    SourceRow {
                        id,
                        studio_id,
                        kind,
                        name,
                        created_at,
                    },
                    key_digest,
                )
            }),
        )
    }

    /// Inserts a destination.
    pub async fn insert_destination(&self, dest: &DestinationRow) -> Result<(), ApiError> {
        sqlx::query(
            "INSERT INTO destinations (id, studio_id, platform, name, url, stream_key, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&dest.id)
        .bind(&dest.studio_id)
        .bind(&dest.platform)
        .bind(&dest.name)
        .bind(&dest.url)
        .bind(&dest.stream_key)
        .bind(&dest.created_at)
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// A studio's destinations, oldest first.
    pub async fn destinations_of(&self, studio: &str) -> Result<Vec<DestinationRow>, ApiError> {
        Ok(sqlx::query_as::<_, DestinationRow>(
            "SELECT * FROM destinations WHERE studio_id = ? ORDER BY created_at, id",
        )
        .bind(studio)
        .fetch_all(self.db.pool())
        .await?)
    }

    /// Deletes a destination; false if no such destination.
    pub async fn delete_destination(&self, studio: &str, dest: &str) -> Result<bool, ApiError> {
        let done = sqlx::query("DELETE FROM destinations WHERE id = ? AND studio_id = ?")
            .bind(dest)
            .bind(studio)
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a broadcast as live; false if one already is.
    pub async fn insert_broadcast(&self, broadcast: &BroadcastRow) -> Result<bool, ApiError> {
        let insert = match self.db.dialect() {
            Dialect::Sqlite => {
                "INSERT OR IGNORE INTO broadcasts (studio_id, origin_id, origin_url, started_at)
                 VALUES (?, ?, ?, ?)"
            }
            Dialect::MySql => {
                "INSERT IGNORE INTO broadcasts (studio_id, origin_id, origin_url, started_at)
                 VALUES (?, ?, ?, ?)"
            }
        };
        let done = sqlx::query(insert)
            .bind(&broadcast.studio_id)
            .bind(&broadcast.origin_id)
            .bind(&broadcast.origin_url)
            .bind(&broadcast.started_at)
            .execute(self.db.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The studio's live broadcast, if any.
    pub async fn broadcast(&self, studio: &str) -> Result<Option<BroadcastRow>, ApiError> {
        Ok(
            sqlx::query_as::<_, BroadcastRow>("SELECT * FROM broadcasts WHERE studio_id = ?")
                .bind(studio)
                .fetch_optional(self.db.pool())
                .await?,
        )
    }

    /// Ids of the owner's studios that are live, in one query.
    pub async fn live_studios_of(&self, owner: &str) -> Result<Vec<String>, ApiError> {
        Ok(sqlx::query_scalar(
            "SELECT b.studio_id FROM broadcasts b JOIN studios s ON s.id = b.studio_id
             WHERE s.owner_id = ?",
        )
        .bind(owner)
        .fetch_all(self.db.pool())
        .await?)
    }

    /// How many studios `owner` has.
    pub async fn studio_count(&self, owner: &str) -> Result<i64, ApiError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM studios WHERE owner_id = ?")
                .bind(owner)
                .fetch_one(self.db.pool())
                .await?,
        )
    }

    /// How many sources and destinations `studio` has.
    pub async fn attachment_counts(&self, studio: &str) -> Result<(i64, i64), ApiError> {
        Ok(sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM sources WHERE studio_id = ?),
                    (SELECT COUNT(*) FROM destinations WHERE studio_id = ?)",
        )
        .bind(studio)
        .bind(studio)
        .fetch_one(self.db.pool())
        .await?)
    }

    /// Studios recorded as live on the origin `origin_id`, sorted.
    pub async fn broadcasts_on(&self, origin_id: &str) -> Result<Vec<String>, ApiError> {
        Ok(sqlx::query_scalar(
            "SELECT studio_id FROM broadcasts WHERE origin_id = ? ORDER BY studio_id",
        )
        .bind(origin_id)
        .fetch_all(self.db.pool())
        .await?)
    }

    /// Forgets the studio's broadcast.
    pub async fn delete_broadcast(&self, studio: &str) -> Result<(), ApiError> {
        sqlx::query("DELETE FROM broadcasts WHERE studio_id = ?")
            .bind(studio)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}

/// Now as RFC 3339.
pub fn now_rfc3339() -> String {
    // Formatting a UTC timestamp as RFC 3339 cannot fail for years 0-9999.
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}
