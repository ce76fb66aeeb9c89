//! Relational storage: SQLite in a file (embedded) or MySQL/MariaDB
//! (production), chosen by the URL.
//!
//! Both go through sqlx's `Any` driver, so a repository writes each query
//! once, in the SQL both dialects share (`?` placeholders, plain types:
//! text and 64-bit integers). Where the dialects differ (upserts, ignored
//! duplicates) the repository asks [`Database::dialect`]. Each dialect has
//! its own migrations, since their DDL differs.

use std::path::Path;
use std::str::FromStr;
use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::{MigrateDatabase, Migrator};
use sqlx::{Any, AnyPool, Executor};

/// Which SQL a [`Database`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite 3, embedded.
    Sqlite,
    /// MySQL 8 or MariaDB 10.5+.
    MySql,
}

/// Opening or migrating a database failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL names no supported database.
    #[error("unsupported database URL (expected sqlite:… or mysql://…)")]
    UnsupportedUrl,
    /// The database could not be created, reached or opened.
    #[error("opening database: {0}")]
    Open(#[source] sqlx::Error),
    /// A migration failed.
    #[error("migrating database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Another instance held the migration lock too long.
    #[error("timed out waiting for another instance to finish migrating")]
    MigrationLock,
    /// The file could not be prepared.
    #[error("preparing database file: {0}")]
    File(#[from] std::io::Error),
}

/// A connection pool and the dialect it speaks.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    dialect: Dialect,
}

/// The migrations of one service, a set per dialect.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    /// For SQLite.
    pub sqlite: &'static Migrator,
    /// For MySQL/MariaDB.
    pub mysql: &'static Migrator,
}

/// Connections a MySQL pool keeps at most.
const MYSQL_MAX_CONNECTIONS: u32 = 16;
/// How long an instance waits for another to finish migrating.
const MIGRATION_LOCK_WAIT: Duration = Duration::from_secs(120);
/// How long a query waits for a free connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

impl Database {
    /// Opens the database a URL names: `mysql://user:password@host/db`
    /// (the database is created when missing) or `sqlite:path`.
    pub async fn open(url: &str) -> Result<Self, DbError> {
        install_drivers();
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            Self::open_mysql(&url).await
        } else if let Some(path) = url
            .strip_prefix("sqlite://")
            .or(url.strip_prefix("sqlite:"))
        {
            Self::open_sqlite(Path::new(path)).await
        } else {
            Err(DbError::UnsupportedUrl)
        }
    }

    /// Opens (creating if missing) the SQLite database in the file at
    /// `path`, with write-ahead logging so readers do not wait for writers.
    pub async fn open_sqlite(path: &Path) -> Result<Self, DbError> {
        install_drivers();
        create_private_file(path)?;
        let url = format!("sqlite://{}", path.display());
        let pragmas = "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000; \
                       PRAGMA foreign_keys = ON;";
        Self::sqlite_pool(&url, 8, pragmas).await
    }

    /// A private in-memory SQLite database, for tests: one connection, so
    /// every query sees the same database.
    pub async fn open_sqlite_memory() -> Result<Self, DbError> {
        install_drivers();
        Self::sqlite_pool("sqlite::memory:", 1, "PRAGMA foreign_keys = ON;").await
    }

    /// A SQLite pool whose every connection first runs `pragmas`.
    async fn sqlite_pool(
        url: &str,
        connections: u32,
        pragmas: &'static str,
    ) -> Result<Self, DbError> {
        let options = AnyConnectOptions::from_str(url).map_err(DbError::Open)?;
        let pool = AnyPoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    conn.execute(pragmas).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(DbError::Open)?;
        Ok(Self {
            pool,
            dialect: Dialect::Sqlite,
        })
    }

    async fn open_mysql(url: &str) -> Result<Self, DbError> {
        if !Any::database_exists(url).await.map_err(DbError::Open)? {
            // Instances starting together race to create it; losing that
            // race is no failure.
            if let Err(err) = Any::create_database(url).await {
                if !Any::database_exists(url).await.map_err(DbError::Open)? {
                    return Err(DbError::Open(err));
                }
            }
        }
        let options = AnyConnectOptions::from_str(url).map_err(DbError::Open)?;
        let pool = AnyPoolOptions::new()
            .max_connections(MYSQL_MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(DbError::Open)?;
        Ok(Self {
            pool,
            dialect: Dialect::MySql,
        })
    }

    /// Applies the migrations of this database's dialect that have not
    /// run yet. Instances of a service starting together take turns: the
    /// first migrates, the others find the work done.
    pub async fn migrate(&self, migrations: Migrations) -> Result<(), DbError> {
        match self.dialect {
            Dialect::Sqlite => migrations.sqlite.run(&self.pool).await?,
            Dialect::MySql => {
                // sqlx's own migration lock asks MariaDB to wait forever with
                // a timeout of -1, which MariaDB takes as "do not wait"; two
                // instances then apply the same migration at once. A lock of
                // our own, with a real timeout, keeps them apart.
                let mut holder = self.pool.acquire().await.map_err(DbError::Open)?;
                let locked: Option<i64> =
                    sqlx::query_scalar("SELECT GET_LOCK(CONCAT('migrate:', DATABASE()), ?)")
                        .bind(MIGRATION_LOCK_WAIT.as_secs() as i64)
                        .fetch_one(&mut *holder)
                        .await
                        .map_err(DbError::Open)?;
                if locked != Some(1) {
                    return Err(DbError::MigrationLock);
                }
                let migrated = migrations.mysql.run(&self.pool).await;
                let _ = sqlx::query("SELECT RELEASE_LOCK(CONCAT('migrate:', DATABASE()))")
                    .execute(&mut *holder)
                    .await;
                migrated?;
            }
        }
        Ok(())
    }

    /// The pool, for queries.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The SQL dialect, for the few statements that differ.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Whether the database answers a trivial query (readiness).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection; queries after this fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn install_drivers() {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(sqlx::any::install_default_drivers);
}

/// Creates the database file readable by this user only: it holds password
/// hashes and destinations' stream keys. SQLite gives its -wal and -shm
/// files the same mode.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}
