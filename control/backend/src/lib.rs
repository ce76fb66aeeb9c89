//! The backends BuildStream's control-plane services share. Each sits
//! behind a small type with two implementations: an embedded one that
//! needs no server (what `buildstream dev` runs on) and the real one a
//! production deployment points at with a URL.
//!
//! - [`db`]: relational storage, SQLite or MySQL/MariaDB.
//! - [`cache`]: shared short-lived state, in memory or Redis.
//! - [`bus`]: domain events, in process or RabbitMQ.

#![warn(missing_docs)]

pub mod bus;
pub mod cache;
pub mod db;
#[cfg(feature = "testing")]
pub mod testing;

pub use bus::{Bus, BusError, Event, EventSender, SharedBus};
pub use cache::{Cache, CacheError, SharedCache};
pub use db::{Database, DbError, Dialect, Migrations};
