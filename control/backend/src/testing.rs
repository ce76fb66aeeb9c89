//! Backends for tests: each test runs against the embedded backend and the
//! real server on this machine, so both implementations meet the same
//! expectations. The servers are the ones `make test` makes sure are
//! running; a test fails, rather than skips, when one cannot be reached.
//!
//! `BUILDSTREAM_TEST_MYSQL_URL` (default `mysql://root@127.0.0.1:3306`) and
//! `BUILDSTREAM_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) point
//! elsewhere.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::bus::{EventSender, LocalBus};
use crate::cache::{self, SharedCache};
use crate::Database;

/// The MySQL server tests create their databases on.
pub fn mysql_server_url() -> String {
    std::env::var("BUILDSTREAM_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
}

/// The Redis tests use.
pub fn redis_url() -> String {
    std::env::var("BUILDSTREAM_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A name no other test (in this or another process) uses.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A database made for one test; a MySQL one is dropped with it.
pub struct TestDatabase {
    /// The database.
    pub db: Database,
    /// `SQLite` or `MySQL`, for assertion messages.
    pub label: &'static str,
    mysql_name: Option<String>,
}

impl TestDatabase {
    /// A fresh in-memory SQLite database.
    pub async fn sqlite() -> Self {
        Self {
            db: Database::open_sqlite_memory()
                .await
                .expect("opening in-memory SQLite"),
            label: "SQLite",
            mysql_name: None,
        }
    }

    /// A fresh database on the test MySQL server, or a panic saying why
    /// there is none.
    pub async fn mysql() -> Self {
        let name = unique_name("bstest_");
        let url = format!("{}/{name}", mysql_server_url());
        let db = Database::open(&url).await.unwrap_or_else(|err| {
            panic!(
                "MySQL at {} (make test starts it): {err}",
                mysql_server_url()
            )
        });
        Self {
            db,
            label: "MySQL",
            mysql_name: Some(name),
        }
    }

    /// The URL another process opens this database at (MySQL only).
    pub fn url(&self) -> Option<String> {
        let name = self.mysql_name.as_ref()?;
        Some(format!("{}/{name}", mysql_server_url()))
    }

    /// Both: SQLite first, then MySQL.
    pub async fn both() -> [Self; 2] {
        [Self::sqlite().await, Self::mysql().await]
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.mysql_name.take() else {
            return;
        };
        // Drop runs inside the test's runtime, which cannot be blocked on;
        // a thread with a runtime of its own drops the database.
        let server = mysql_server_url();
        let dropping = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    if let Ok(db) = Database::open(&format!("{server}/{name}")).await {
                        // The name is ours (`unique_name`): letters, digits, `_`.
                        let drop = format!("DROP DATABASE `{name}`");
                        let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                            .execute(db.pool())
                            .await;
                        db.close().await;
                    }
                });
            }
        });
        let _ = dropping.join();
    }
}

/// A cache for one test: its own key namespace on the test Redis, or a
/// fresh in-memory one.
pub async fn cache(redis: bool) -> SharedCache {
    let url = redis.then(redis_url);
    cache::open(url.as_deref(), &format!("{}:", unique_name("bstest")))
        .await
        .unwrap_or_else(|err| panic!("Redis at {} (make test starts it): {err}", redis_url()))
}

/// An event sender whose events nobody reads, for tests that do not look
/// at events.
pub fn events() -> EventSender {
    EventSender::start(std::sync::Arc::new(LocalBus::default()))
}

/// The RabbitMQ tests use (`BUILDSTREAM_TEST_AMQP_URL`, default the
/// machine's broker as guest).
pub fn amqp_url() -> String {
    std::env::var("BUILDSTREAM_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// Deletes queues a test made on the test RabbitMQ (none there is fine).
pub async fn delete_amqp_queues(names: &[&str]) {
    let properties = lapin::ConnectionProperties::default();
    let Ok(connection) = lapin::Connection::connect(&amqp_url(), properties).await else {
        return;
    };
    if let Ok(channel) = connection.create_channel().await {
        for name in names {
            let options = lapin::options::QueueDeleteOptions::default();
            let _ = channel.queue_delete((*name).into(), options).await;
        }
    }
    let _ = connection.close(200, "done".into()).await;
}
