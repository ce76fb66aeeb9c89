//! The backends BuildStream's control-plane services share. Each sits
//! behind a small type with two implementations: an embedded one that
//! needs no server (what `buildstream dev` runs on) and the real one a
//! production deployment points at with a URL.
//!
//! - [`db`]: relational storage, SQLite or MySQL/MariaDB.
//! - [`cache`]: shared short-lived state, in memory or Redis.
//! - [`bus`]: domain events, in process or RabbitMQ.
//! - [`search`]: the studio search index, tantivy or Elasticsearch.

#![warn(missing_docs)]

pub mod bus;
pub mod cache;
pub mod db;
pub mod search;
#[cfg(feature = "testing")]
pub mod testing;

pub use bus::{Bus, BusError, Event, EventSender, SharedBus};
pub use cache::{Cache, CacheError, SharedCache};
pub use db::{Database, DbError, Dialect, Migrations};

/// Whether a service's database and cache both answer: what its `/readyz`
/// reports. The error names the backend that does not.
pub async fn ready(db: &Database, cache: &dyn Cache) -> Result<(), String> {
    db.ping().await.map_err(|err| format!("database: {err}"))?;
    cache.ping().await.map_err(|err| format!("cache: {err}"))
}
