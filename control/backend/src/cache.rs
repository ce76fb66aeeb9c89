//! The shared cache: short-lived state every instance of a service must
//! see alike (refresh tokens, rate-limit counters, studio lookups, who is
//! in a room). Redis in production; a map in memory for one process.
//!
//! Every entry expires: the cache holds nothing that cannot be rebuilt or
//! that outlives its time-to-live.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use tokio::time::Instant;

/// A cache operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// Redis refused the command or cannot be reached.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// What the services ask of a cache.
#[async_trait]
pub trait Cache: Send + Sync {
    /// The value at `key`, if present and not expired.
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError>;

    /// Stores `value` at `key` for `ttl`, replacing what was there.
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError>;

    /// Stores `value` at `key` for `ttl` unless the key is present; true
    /// when this call stored it. Exactly one of racing callers wins.
    async fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, CacheError>;

    /// Removes `key`.
    async fn delete(&self, key: &str) -> Result<(), CacheError>;

    /// Adds one to the counter at `key` and returns the new count. A new
    /// counter expires `window` after its first increment (a fixed window).
    async fn increment(&self, key: &str, window: Duration) -> Result<u64, CacheError>;

    /// Sets `field` of the map at `key`, and gives the whole map `ttl`.
    async fn map_set(
        &self,
        key: &str,
        field: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), CacheError>;

    /// Every field of the map at `key`.
    async fn map_all(&self, key: &str) -> Result<HashMap<String, String>, CacheError>;

    /// Removes `field` from the map at `key`.
    async fn map_delete(&self, key: &str, field: &str) -> Result<(), CacheError>;

    /// Whether the cache answers (readiness).
    async fn ping(&self) -> Result<(), CacheError>;
}

/// A shared handle to whichever cache is configured.
pub type SharedCache = Arc<dyn Cache>;

/// Opens the cache a URL names (`redis://host:port/db`), or the in-memory
/// one when there is none. Keys are prefixed with `namespace`, so several
/// deployments (or test runs) can share one Redis.
pub async fn open(url: Option<&str>, namespace: &str) -> Result<SharedCache, CacheError> {
    match url {
        Some(url) => Ok(Arc::new(RedisCache::connect(url, namespace).await?)),
        None => Ok(Arc::new(MemoryCache::default())),
    }
}

/// The cache in this process's memory: for `buildstream dev` and one
/// instance of each service.
#[derive(Default)]
pub struct MemoryCache {
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, (Value, Instant)>,
    writes_since_sweep: usize,
}

enum Value {
    Text(String),
    Map(HashMap<String, String>),
}

/// Writes between two sweeps of expired entries; bounds the memory that
/// keys nobody reads again can hold.
const SWEEP_EVERY: usize = 1024;

impl Entries {
    fn live(&mut self, key: &str) -> Option<&mut Value> {
        let now = Instant::now();
        if self.map.get(key).is_some_and(|(_, until)| *until <= now) {
            self.map.remove(key);
        }
        self.map.get_mut(key).map(|(value, _)| value)
    }

    fn insert(&mut self, key: &str, value: Value, ttl: Duration) {
        self.writes_since_sweep += 1;
        if self.writes_since_sweep >= SWEEP_EVERY {
            let now = Instant::now();
            self.map.retain(|_, (_, until)| *until > now);
            self.writes_since_sweep = 0;
        }
        self.map
            .insert(key.to_owned(), (value, Instant::now() + ttl));
    }
}

impl MemoryCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        Ok(match self.lock().live(key) {
            Some(Value::Text(text)) => Some(text.clone()),
            _ => None,
        })
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError> {
        self.lock().insert(key, Value::Text(value.to_owned()), ttl);
        Ok(())
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let mut entries = self.lock();
        if entries.live(key).is_some() {
            return Ok(false);
        }
        entries.insert(key, Value::Text(value.to_owned()), ttl);
        Ok(true)
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.lock().map.remove(key);
        Ok(())
    }

    async fn increment(&self, key: &str, window: Duration) -> Result<u64, CacheError> {
        let mut entries = self.lock();
        if let Some(Value::Text(count)) = entries.live(key) {
            let next = count.parse::<u64>().unwrap_or(0) + 1;
            *count = next.to_string();
            return Ok(next);
        }
        entries.insert(key, Value::Text("1".to_owned()), window);
        Ok(1)
    }

    async fn map_set(
        &self,
        key: &str,
        field: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let mut entries = self.lock();
        let mut map = match entries.map.remove(key) {
            Some((Value::Map(map), until)) if until > Instant::now() => map,
            _ => HashMap::new(),
        };
        map.insert(field.to_owned(), value.to_owned());
        entries.insert(key, Value::Map(map), ttl);
        Ok(())
    }

    async fn map_all(&self, key: &str) -> Result<HashMap<String, String>, CacheError> {
        Ok(match self.lock().live(key) {
            Some(Value::Map(map)) => map.clone(),
            _ => HashMap::new(),
        })
    }

    async fn map_delete(&self, key: &str, field: &str) -> Result<(), CacheError> {
        if let Some(Value::Map(map)) = self.lock().live(key) {
            map.remove(field);
        }
        Ok(())
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }
}

/// Redis (or anything speaking its protocol, such as Valkey), through a
/// connection manager that reconnects by itself after a failure.
pub struct RedisCache {
    connection: ConnectionManager,
    namespace: String,
}

/// How long one command may take, connecting included.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

impl RedisCache {
    /// Connects to the Redis at `url`.
    pub async fn connect(url: &str, namespace: &str) -> Result<Self, CacheError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(2);
        let connection = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            connection,
            namespace: namespace.to_owned(),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.namespace)
    }
}

/// Redis counts expiry in whole milliseconds; zero would mean "never".
fn millis(ttl: Duration) -> u64 {
    ttl.as_millis().clamp(1, u64::MAX as u128) as u64
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        Ok(self.connection.clone().get(self.key(key)).await?)
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError> {
        let options =
            redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(millis(ttl)));
        let _: () = self
            .connection
            .clone()
            .set_options(self.key(key), value, options)
            .await?;
        Ok(())
    }

    async fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let options = redis::SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(redis::SetExpiry::PX(millis(ttl)));
        let stored: Option<String> = self
            .connection
            .clone()
            .set_options(self.key(key), value, options)
            .await?;
        Ok(stored.is_some())
    }

    async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let _: () = self.connection.clone().del(self.key(key)).await?;
        Ok(())
    }

    async fn increment(&self, key: &str, window: Duration) -> Result<u64, CacheError> {
        // INCR and the expiry of a new counter in one transaction: a
        // counter left without expiry would never reset.
        let key = self.key(key);
        let (count, _): (u64, i64) = redis::pipe()
            .atomic()
            .incr(&key, 1u64)
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(millis(window))
            .arg("NX")
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(count)
    }

    async fn map_set(
        &self,
        key: &str,
        field: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let key = self.key(key);
        let _: () = redis::pipe()
            .atomic()
            .hset(&key, field, value)
            .ignore()
            .pexpire(&key, millis(ttl) as i64)
            .ignore()
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(())
    }

    async fn map_all(&self, key: &str) -> Result<HashMap<String, String>, CacheError> {
        Ok(self.connection.clone().hgetall(self.key(key)).await?)
    }

    async fn map_delete(&self, key: &str, field: &str) -> Result<(), CacheError> {
        let _: () = self.connection.clone().hdel(self.key(key), field).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let _: String = redis::cmd("PING")
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(())
    }
}
