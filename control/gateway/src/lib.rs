//! The gateway: the one public entry of the control plane.
//!
//! It routes each API request by path to an instance of the service that
//! owns it ([`ROUTES`]), found by DNS SRV or a static list
//! ([`discovery`]), choosing the least busy healthy instance behind a
//! closed breaker ([`upstream`], [`breaker`]) and retrying only what is
//! safe to retry ([`proxy`]). It checks access tokens once, and tells the
//! services who the caller is in headers they trust only with the gateway's
//! token; it rate-limits per client and route ([`limits`]); it serves the
//! API reference (Swagger UI at `/docs`, each service's OpenAPI document at
//! `/openapi/<service>.json`, fetched from one of its instances);
//! everything else is the web app.

#![warn(missing_docs)]

pub mod breaker;
pub mod discovery;
pub mod limits;
pub mod proxy;
pub mod upstream;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use buildstream_backend::SharedCache;
use buildstream_service::auth::{bearer_token, GATEWAY_TOKEN_HEADER, USER_HEADER};
use buildstream_service::{ApiError, NodeToken, TokenKeys};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

pub use breaker::BreakerPolicy;
pub use discovery::{DiscoveryTimings, ServiceSource};
pub use limits::{Limit, RateLimits};
pub use proxy::ProxyPolicy;

/// Which service owns which paths: a path belongs to the first prefix it
/// equals or continues with `/`.
pub const ROUTES: &[(&str, &str)] = &[
    ("/api/v1/users", "user"),
    ("/api/v1/sessions", "user"),
    ("/api/v1/studios", "studio"),
    ("/api/v1/search", "studio"),
    ("/internal/v1", "studio"),
];

/// The services behind the gateway, by the names [`ROUTES`] use.
pub const SERVICES: &[&str] = &["user", "studio"];

/// Each service's OpenAPI document, as the gateway serves it.
pub const API_DOCUMENTS: &[(&str, &str)] = &[
    ("user", "/openapi/user.json"),
    ("studio", "/openapi/studio.json"),
];

/// The largest request body forwarded: a scene with a 2 MiB logo and
/// background, base64.
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// How the gateway is set up.
#[derive(Debug, Clone, Default)]
pub struct GatewaySettings {
    /// Where each service's instances are found.
    pub services: HashMap<String, ServiceSource>,
    /// Name server for SRV lookups; the system's when unset.
    pub name_server: Option<SocketAddr>,
    /// Discovery intervals.
    pub timings: DiscoveryTimings,
    /// When instances' breakers open.
    pub breaker: BreakerPolicy,
    /// Deadlines and retries.
    pub proxy: ProxyPolicy,
    /// Request limits.
    pub rate_limits: RateLimits,
}

/// A running gateway: its pools, kept current by discovery tasks.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    pools: HashMap<&'static str, Arc<upstream::Pool>>,
    client: proxy::HttpClient,
    policy: ProxyPolicy,
    keys: TokenKeys,
    /// The service token, as the header value it is sent in.
    service_token: HeaderValue,
    limiter: limits::RateLimiter,
}

impl Gateway {
    /// Starts discovery for every service; the tasks run in `tasks` until
    /// `cancel` fires.
    pub fn start(
        settings: GatewaySettings,
        keys: TokenKeys,
        service_token: NodeToken,
        cache: SharedCache,
        tasks: &mut JoinSet<()>,
        cancel: CancellationToken,
    ) -> Result<Self, String> {
        let service_token = HeaderValue::from_str(service_token.expose())
            .map_err(|_| "the service token is not a valid header value".to_owned())?;
        let resolver = Arc::new(discovery::resolver(settings.name_server)?);
        let client = proxy::client();
        let mut pools = HashMap::new();
        for service in SERVICES {
            let pool = Arc::new(upstream::Pool::new(service, settings.breaker));
            let source = settings.services.get(*service).cloned().unwrap_or_default();
            if source.srv.is_none() && source.fallback.is_empty() {
                return Err(format!("no instances configured for the {service} service"));
            }
            tasks.spawn(discovery::run(
                pool.clone(),
                source,
                resolver.clone(),
                client.clone(),
                settings.timings,
                cancel.clone(),
            ));
            pools.insert(*service, pool);
        }
        Ok(Self {
            inner: Arc::new(Inner {
                pools,
                client,
                policy: settings.proxy,
                keys,
                service_token,
                limiter: limits::RateLimiter::new(cache, settings.rate_limits),
            }),
        })
    }

    /// The pool of a service, to look at its instances.
    pub fn pool(&self, service: &str) -> Option<Arc<upstream::Pool>> {
        self.inner.pools.get(service).cloned()
    }

    /// The gateway's routes: its own health, readiness and instance view,
    /// every API path to its service, and `web` for the rest.
    pub fn router(self, web: Router) -> Router {
        let rest = move |State(gateway): State<Gateway>,
                         ConnectInfo(peer): ConnectInfo<SocketAddr>,
                         request: Request| {
            let web = web.clone();
            async move {
                match service_for(request.uri().path()) {
                    Some(service) => route(gateway, service, peer, request).await,
                    None => match web.oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    },
                }
            }
        };
        let documents = API_DOCUMENTS
            .iter()
            .map(|(service, url)| utoipa_swagger_ui::Url::new(service, url));
        let docs = utoipa_swagger_ui::SwaggerUi::new("/docs")
            .config(utoipa_swagger_ui::Config::new(documents).try_it_out_enabled(true));
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .route("/gateway/v1/instances", get(instances))
            .route("/openapi/{document}", get(openapi_document))
            .merge(docs)
            .fallback(rest)
            .method_not_allowed_fallback(ApiError::wrong_method)
            .with_state(self)
    }
}

/// `GET /openapi/<service>.json`: the service's OpenAPI document, from
/// whichever of its instances answers.
async fn openapi_document(
    State(gateway): State<Gateway>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::extract::Path(document): axum::extract::Path<String>,
) -> Response {
    let pool = document
        .strip_suffix(".json")
        .and_then(|service| gateway.inner.pools.get(service));
    let Some(pool) = pool else {
        return ApiError::not_found("API document").into_response();
    };
    let (parts, ()) = axum::http::Request::get("/openapi.json")
        .body(())
        .expect("a fixed request")
        .into_parts();
    let inner = &gateway.inner;
    proxy::forward(
        pool,
        &inner.client,
        inner.policy,
        &parts,
        Bytes::new(),
        client_ip(peer),
    )
    .await
}

/// The service owning `path`, if any.
pub fn service_for(path: &str) -> Option<&'static str> {
    ROUTES.iter().find_map(|(prefix, service)| {
        let rest = path.strip_prefix(prefix)?;
        (rest.is_empty() || rest.starts_with('/')).then_some(*service)
    })
}

async fn route(
    gateway: Gateway,
    service: &'static str,
    peer: SocketAddr,
    request: Request,
) -> Response {
    let (mut parts, body) = request.into_parts();
    let inner = &gateway.inner;

    // Nobody but the gateway says who the caller is.
    parts.headers.remove(USER_HEADER);
    parts.headers.remove(GATEWAY_TOKEN_HEADER);
    let class = limits::RouteClass::of(&parts.method, parts.uri.path());
    let user = match identify(inner, &parts.headers, class) {
        Ok(user) => user,
        Err(err) => return err.into_response(),
    };
    if let Err(refused) = inner.limiter.check(class, user.as_deref(), peer.ip()).await {
        return refused.into_response();
    }
    if let Some(user) = user.as_deref().and_then(|u| HeaderValue::from_str(u).ok()) {
        parts.headers.insert(USER_HEADER, user);
        parts
            .headers
            .insert(GATEWAY_TOKEN_HEADER, inner.service_token.clone());
    }

    let body = match read_body(body).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Some(pool) = inner.pools.get(service) else {
        return ApiError::no_route().await.into_response();
    };
    proxy::forward(
        pool,
        &inner.client,
        inner.policy,
        &parts,
        body,
        client_ip(peer),
    )
    .await
}

/// The signed-in user of a request, from its access token. Studio tokens
/// (guests, viewers) and node tokens pass through to the service, which
/// checks them; an access token that fails is refused here.
fn identify(
    inner: &Inner,
    headers: &axum::http::HeaderMap,
    class: limits::RouteClass,
) -> Result<Option<String>, ApiError> {
    if class == limits::RouteClass::Internal {
        return Ok(None);
    }
    let Some(token) = bearer_token(headers) else {
        return Ok(None);
    };
    match inner.keys.verify(token) {
        Ok(claims) => Ok(Some(claims.sub)),
        Err(err) => {
            if inner.keys.verify_studio(token).is_ok() {
                Ok(None)
            } else {
                Err(err)
            }
        }
    }
}

async fn read_body(body: Body) -> Result<Bytes, Response> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
            )
            .into_response()
        })
}

fn client_ip(peer: SocketAddr) -> IpAddr {
    peer.ip().to_canonical()
}

/// Ready while every service has an instance that passed its last check.
async fn readyz(State(gateway): State<Gateway>) -> Response {
    let missing: Vec<&str> = SERVICES
        .iter()
        .copied()
        .filter(|service| {
            gateway
                .pool(service)
                .is_none_or(|pool| !pool.instances().iter().any(|i| i.healthy()))
        })
        .collect();
    if missing.is_empty() {
        "ready".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no healthy instance of: {}\n", missing.join(", ")),
        )
            .into_response()
    }
}

/// One instance as `/gateway/v1/instances` shows it.
#[derive(serde::Serialize)]
struct InstanceView {
    service: String,
    url: String,
    healthy: bool,
    breaker: &'static str,
    outstanding: usize,
}

async fn instances(State(gateway): State<Gateway>) -> Json<Vec<InstanceView>> {
    let mut views = Vec::new();
    for service in SERVICES {
        if let Some(pool) = gateway.pool(service) {
            for instance in pool.instances() {
                views.push(InstanceView {
                    service: (*service).to_owned(),
                    url: instance.url.clone(),
                    healthy: instance.healthy(),
                    breaker: instance.breaker_state().as_str(),
                    outstanding: instance.outstanding(),
                });
            }
        }
    }
    Json(views)
}
