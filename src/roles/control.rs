//! The control plane: the user and studio services, each alone
//! (`buildstream control user`) or all in one process behind the gateway
//! (`buildstream control`, and `buildstream dev`), and the gateway alone
//! (`buildstream gateway`).

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use buildstream_backend::search::{ElasticsearchIndex, SharedIndex, TantivyIndex};
use buildstream_backend::{bus, cache, Database, EventSender, SharedBus, SharedCache};
use buildstream_gateway::{
    BreakerPolicy, DiscoveryTimings, Gateway, Limit, RateLimits, ServiceSource, MAX_BODY_BYTES,
};
use buildstream_service::http::Limits;
use buildstream_service::{telemetry, ApiError, NodeToken};
use buildstream_studio::{IndexFeed, StudioService, StudioSettings};
use buildstream_user::UserService;
use clap::ValueEnum;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::{Secrets, Settings};

/// A control-plane service that runs as a process of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    /// Accounts, sign-in, tokens.
    User,
    /// Studios, rooms, sources, destinations, going live, media nodes.
    Studio,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::User => "user",
            Service::Studio => "studio",
        }
    }
}

/// Runs one service alone on its configured address until `cancel` fires.
pub async fn run_service(
    service: Service,
    settings: Settings,
    secrets: Secrets,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let cache = open_cache(&settings).await?;
    let bus = open_bus(&settings).await?;
    let router = service_router(service, &settings, &secrets, cache, bus, cancel.clone()).await?;
    let listen = match service {
        Service::User => settings.control.user_listen(),
        Service::Studio => settings.control.studio_listen(),
    };
    let listener = bind(listen, service.name()).await?;
    let draining = Arc::new(AtomicBool::new(false));
    let router = router.layer(axum::middleware::from_fn_with_state(
        draining.clone(),
        not_ready_while_draining,
    ));
    let stop = CancellationToken::new();
    let drain = Duration::from_millis(settings.control.drain_ms);
    tokio::spawn({
        let stop = stop.clone();
        async move {
            cancel.cancelled().await;
            draining.store(true, Ordering::SeqCst);
            tracing::info!(
                ms = drain.as_millis() as u64,
                "draining: not ready, serving until gateways have stopped sending"
            );
            tokio::time::sleep(drain).await;
            stop.cancel();
        }
    });
    serve(listener, router, service.name(), stop).await
}

/// While `draining`, `/readyz` says so: a service stopping keeps serving
/// what it is sent until the gateways' next health check takes it out of
/// their pools, and closes no connection a request may be on its way over.
async fn not_ready_while_draining(
    State(draining): State<Arc<AtomicBool>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    if draining.load(Ordering::SeqCst) && request.uri().path() == "/readyz" {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining\n").into_response();
    }
    next.run(request).await
}

/// Runs the gateway alone until `cancel` fires.
pub async fn run_gateway(
    settings: Settings,
    secrets: Secrets,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let cache = open_cache(&settings).await?;
    let sources = HashMap::from([
        ("user".to_owned(), source(&settings.gateway.user)),
        ("studio".to_owned(), source(&settings.gateway.studio)),
    ]);
    let mut tasks = JoinSet::new();
    let result = gateway(&settings, &secrets, cache, sources, &mut tasks, cancel).await;
    tasks.shutdown().await;
    result
}

/// Runs every service and the gateway in front of them in this process,
/// until `cancel` fires. The services listen on loopback ports of the
/// system's choosing; only the gateway's address is public.
pub async fn run_all(
    settings: Settings,
    secrets: Secrets,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    // One cache and one bus for all: in memory, they are what makes the
    // services one deployment.
    let cache = open_cache(&settings).await?;
    let bus = open_bus(&settings).await?;
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let mut sources = HashMap::new();
    for service in [Service::User, Service::Studio] {
        let router = service_router(
            service,
            &settings,
            &secrets,
            cache.clone(),
            bus.clone(),
            cancel.clone(),
        )
        .await?;
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)), service.name()).await?;
        let url = format!("http://{}", listener.local_addr()?);
        sources.insert(
            service.name().to_owned(),
            ServiceSource {
                srv: None,
                fallback: vec![url],
            },
        );
        tasks.spawn(serve(listener, router, service.name(), cancel.clone()));
    }

    let mut discovery = JoinSet::new();
    let result = tokio::select! {
        result = gateway(&settings, &secrets, cache, sources, &mut discovery, cancel.clone()) => result,
        Some(ended) = tasks.join_next() => match ended {
            Ok(Ok(())) => Err(anyhow::anyhow!("a service stopped unexpectedly")),
            Ok(Err(err)) => Err(err),
            Err(err) => Err(anyhow::anyhow!("a service task failed: {err}")),
        },
    };
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    discovery.shutdown().await;
    result
}

async fn gateway(
    settings: &Settings,
    secrets: &Secrets,
    cache: SharedCache,
    services: HashMap<String, ServiceSource>,
    tasks: &mut JoinSet<()>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let keys = secrets.token_keys()?;
    let config = &settings.gateway;
    let gateway_settings = buildstream_gateway::GatewaySettings {
        services,
        name_server: config.name_server,
        timings: DiscoveryTimings {
            check_every: Duration::from_millis(config.check_interval_ms.max(100)),
            ..DiscoveryTimings::default()
        },
        breaker: BreakerPolicy {
            failures_to_open: config.breaker_failures.max(1),
            open_for: Duration::from_millis(config.breaker_open_ms),
        },
        rate_limits: RateLimits {
            sign_in: Limit {
                requests: config.sign_in_per_minute,
                window: Duration::from_secs(60),
            },
            sign_up: Limit {
                requests: config.sign_up_per_hour,
                window: Duration::from_secs(3600),
            },
            api: Limit {
                requests: config.api_per_minute,
                window: Duration::from_secs(60),
            },
        },
        ..Default::default()
    };
    let gateway = Gateway::start(
        gateway_settings,
        keys,
        NodeToken::new(&secrets.service_token),
        cache,
        tasks,
        cancel.clone(),
    )
    .map_err(|err| anyhow::anyhow!("starting the gateway: {err}"))?;
    let web = super::web::WebApp::new(settings.gateway.web_dir.clone());
    let web = Router::new().fallback(move |request: Request| web.clone().serve(request));
    let router = gateway
        .router(web)
        .route("/metrics", get(telemetry::metrics_endpoint))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            "gateway",
            telemetry::request_context,
        ));
    let listener = bind(settings.gateway.listen, "gateway").await?;
    serve(listener, router, "gateway", cancel).await
}

fn source(upstream: &crate::config::UpstreamSettings) -> ServiceSource {
    ServiceSource {
        srv: upstream.srv.clone().filter(|name| !name.is_empty()),
        fallback: upstream
            .instances
            .iter()
            .map(|url| url.trim().to_owned())
            .filter(|url| !url.is_empty())
            .collect(),
    }
}

async fn open_cache(settings: &Settings) -> anyhow::Result<SharedCache> {
    let url = settings
        .control
        .redis_url
        .as_deref()
        .filter(|u| !u.is_empty());
    cache::open(url, &settings.control.redis_namespace)
        .await
        .context("connecting to Redis")
}

async fn open_bus(settings: &Settings) -> anyhow::Result<SharedBus> {
    let url = settings
        .control
        .amqp_url
        .as_deref()
        .filter(|u| !u.is_empty());
    bus::open(url).await.context("connecting to RabbitMQ")
}

async fn open_database(url: Option<&str>, default_file: &Path) -> anyhow::Result<Database> {
    match url.filter(|u| !u.is_empty()) {
        Some(url) => Database::open(url).await.context("opening database"),
        None => {
            if let Some(dir) = default_file.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            Database::open_sqlite(default_file)
                .await
                .with_context(|| format!("opening {}", default_file.display()))
        }
    }
}

/// A service's routes with its health and readiness.
async fn service_router(
    service: Service,
    settings: &Settings,
    secrets: &Secrets,
    cache: SharedCache,
    bus: SharedBus,
    cancel: CancellationToken,
) -> anyhow::Result<Router> {
    let events = EventSender::start(bus.clone());
    let keys = secrets
        .token_keys()?
        .trusting_gateway(NodeToken::new(&secrets.service_token));
    let router = match service {
        Service::User => {
            let db = open_database(
                settings.control.user.database_url.as_deref(),
                &settings.data_dir.join("user.db"),
            )
            .await?;
            let users = UserService::new(db, cache, events, keys)
                .await
                .context("migrating user database")?;
            let ready = users.clone();
            with_health(users.router(), "user", move || {
                let users = ready.clone();
                async move { users.ready().await }
            })
        }
        Service::Studio => {
            let db = open_database(
                settings.control.studio.database_url.as_deref(),
                &settings.data_dir.join("studio.db"),
            )
            .await?;
            let studio_settings = StudioSettings {
                default_ingest_url: settings.control.default_ingest_url.clone(),
                default_edge_http_url: settings.control.default_edge_http_url.clone(),
                allow_private_destinations: settings.allow_private_destinations.unwrap_or(false),
            };
            let node_token = NodeToken::new(&secrets.node_token);
            let (index, feed): (SharedIndex, IndexFeed) = match &settings.control.elasticsearch_url
            {
                Some(url) => (
                    Arc::new(
                        ElasticsearchIndex::new(url, &settings.control.elasticsearch_index)
                            .context("elasticsearch_url")?,
                    ),
                    IndexFeed::Shared {
                        queue: format!("{}studio.search", settings.control.redis_namespace),
                        cache: cache.clone(),
                    },
                ),
                None => (
                    Arc::new(TantivyIndex::in_memory().context("creating the search index")?),
                    IndexFeed::Own,
                ),
            };
            let studios =
                StudioService::new(db, cache, events, index, keys, node_token, studio_settings)
                    .await
                    .context("migrating studio database")?;
            tokio::spawn(studios.clone().run_indexer(bus, feed, cancel));
            let ready = studios.clone();
            with_health(studios.router(), "studio", move || {
                let studios = ready.clone();
                async move { studios.ready().await }
            })
        }
    };
    Ok(router)
}

/// `router` with `/healthz` (the process answers), `/readyz` (its backends
/// answer too), `/metrics`, JSON errors for unknown routes and methods, the
/// body limit, and the request context (id, trace, span, metrics).
fn with_health<F, Fut>(router: Router, service: &'static str, ready: F) -> Router
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    router
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = ready.clone();
                async move {
                    match ready().await {
                        Ok(()) => "ready".into_response(),
                        Err(reason) => {
                            (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response()
                        }
                    }
                }
            }),
        )
        .route("/metrics", get(telemetry::metrics_endpoint))
        .fallback(ApiError::no_route)
        .method_not_allowed_fallback(ApiError::wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            service,
            telemetry::request_context,
        ))
}

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener on {addr}"))
}

async fn serve(
    listener: TcpListener,
    router: Router,
    what: &'static str,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let bound = listener.local_addr().context("reading the bound address")?;
    tracing::info!(addr = %bound, "{what} listening");
    buildstream_service::http::serve(
        listener,
        router,
        Limits::default(),
        cancel.cancelled_owned(),
    )
    .await
    .with_context(|| format!("serving {what}"))
}
