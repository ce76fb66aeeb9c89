//! Rate limits per client and per route, counted in the shared cache so
//! that every gateway instance counts the same requests.
//!
//! Each limit is a fixed window: at most `requests` per `window` for one
//! client (the signed-in user, else the address the request came from).
//! Signing in and signing up have limits of their own, much lower, keyed
//! by address: they are what password guessing and account farming hit.

use std::net::IpAddr;
use std::time::Duration;

use axum::http::Method;
use buildstream_backend::SharedCache;
use buildstream_service::ApiError;

/// One limit.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Requests allowed per window.
    pub requests: u64,
    /// The window.
    pub window: Duration,
}

/// The limits of each class of route.
#[derive(Debug, Clone, Copy)]
pub struct RateLimits {
    /// `POST /api/v1/sessions` (password sign-in), per address.
    pub sign_in: Limit,
    /// `POST /api/v1/users`, per address.
    pub sign_up: Limit,
    /// Every other API request, per user or address.
    pub api: Limit,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            sign_in: Limit {
                requests: 10,
                window: Duration::from_secs(60),
            },
            sign_up: Limit {
                requests: 20,
                window: Duration::from_secs(3600),
            },
            api: Limit {
                requests: 1200,
                window: Duration::from_secs(60),
            },
        }
    }
}

/// The class a request's limit comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// Signing in with a password.
    SignIn,
    /// Registering.
    SignUp,
    /// Anything else under `/api`.
    Api,
    /// Media nodes' calls, authenticated by their token at the service and
    /// not limited here.
    Internal,
}

impl RouteClass {
    /// The class of `method path`.
    pub fn of(method: &Method, path: &str) -> Self {
        match (method, path) {
            (&Method::POST, "/api/v1/sessions") => Self::SignIn,
            (&Method::POST, "/api/v1/users") => Self::SignUp,
            (_, path) if path.starts_with("/internal/") => Self::Internal,
            _ => Self::Api,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::SignIn => "sign_in",
            Self::SignUp => "sign_up",
            Self::Api => "api",
            Self::Internal => "internal",
        }
    }
}

/// Counts requests against the limits.
#[derive(Clone)]
pub struct RateLimiter {
    cache: SharedCache,
    limits: RateLimits,
}

impl RateLimiter {
    /// A limiter counting in `cache`.
    pub fn new(cache: SharedCache, limits: RateLimits) -> Self {
        Self { cache, limits }
    }

    /// Counts one request of `class` from `user` (if signed in) at `ip`;
    /// a 429 with the seconds to wait once over the limit.
    pub async fn check(
        &self,
        class: RouteClass,
        user: Option<&str>,
        ip: IpAddr,
    ) -> Result<(), Refused> {
        let limit = match class {
            RouteClass::SignIn => self.limits.sign_in,
            RouteClass::SignUp => self.limits.sign_up,
            RouteClass::Api => self.limits.api,
            RouteClass::Internal => return Ok(()),
        };
        let client = match (class, user) {
            (RouteClass::Api, Some(user)) => format!("user:{user}"),
            _ => format!("ip:{ip}"),
        };
        let window_secs = limit.window.as_secs().max(1);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let window_start = now - now % window_secs;
        let key = format!("ratelimit:{}:{client}:{window_start}", class.name());
        let count = match self.cache.increment(&key, limit.window).await {
            Ok(count) => count,
            // Limits protect the services; a cache outage must not take
            // the whole API down with it.
            Err(err) => {
                tracing::warn!(error = %err, "rate-limit counter unavailable; request let through");
                return Ok(());
            }
        };
        if count > limit.requests {
            return Err(Refused {
                retry_after_secs: window_start + window_secs - now,
            });
        }
        Ok(())
    }
}

/// Over the limit.
#[derive(Debug)]
pub struct Refused {
    /// Seconds until the window ends.
    pub retry_after_secs: u64,
}

impl Refused {
    /// The 429 answer, with `Retry-After`.
    pub fn into_response(self) -> axum::response::Response {
        use axum::response::IntoResponse;
        let mut response = ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many requests; try again in {} s",
                self.retry_after_secs.max(1)
            ),
        )
        .into_response();
        if let Ok(value) = self.retry_after_secs.max(1).to_string().parse() {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use buildstream_backend::cache::MemoryCache;
    use std::sync::Arc;

    #[test]
    fn routes_fall_into_their_classes() {
        assert_eq!(
            RouteClass::of(&Method::POST, "/api/v1/sessions"),
            RouteClass::SignIn
        );
        assert_eq!(
            RouteClass::of(&Method::DELETE, "/api/v1/sessions"),
            RouteClass::Api
        );
        assert_eq!(
            RouteClass::of(&Method::POST, "/api/v1/users"),
            RouteClass::SignUp
        );
        assert_eq!(
            RouteClass::of(&Method::PUT, "/internal/v1/nodes/e1"),
            RouteClass::Internal
        );
        assert_eq!(
            RouteClass::of(&Method::GET, "/api/v1/studios"),
            RouteClass::Api
        );
    }

    #[tokio::test]
    async fn sign_in_is_limited_per_address_and_other_addresses_are_not_held_up() {
        let limits = RateLimits {
            sign_in: Limit {
                requests: 3,
                window: Duration::from_secs(60),
            },
            ..RateLimits::default()
        };
        let limiter = RateLimiter::new(Arc::new(MemoryCache::default()), limits);
        let guesser: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            limiter
                .check(RouteClass::SignIn, None, guesser)
                .await
                .unwrap();
        }
        let refused = limiter
            .check(RouteClass::SignIn, None, guesser)
            .await
            .unwrap_err();
        assert!((1..=60).contains(&refused.retry_after_secs));
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        limiter
            .check(RouteClass::SignIn, None, other)
            .await
            .unwrap();
        limiter.check(RouteClass::Api, None, guesser).await.unwrap();
    }
}
