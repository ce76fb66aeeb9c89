//! The control role: the user and studio services behind one HTTP listener.

use std::time::Instant;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use buildstream_service::http::Limits;
use buildstream_service::storage::open_sqlite;
use buildstream_service::{ApiError, NodeToken, TokenKeys};
use buildstream_studio::{StudioService, StudioSettings};
use buildstream_user::UserService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Secrets, Settings};

/// Largest request body: a scene with a 2 MiB logo and background, base64.
const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

/// Builds the control plane's router over databases in the data directory.
pub async fn router(settings: &Settings, secrets: &Secrets) -> anyhow::Result<Router> {
    std::fs::create_dir_all(&settings.data_dir)
        .with_context(|| format!("creating {}", settings.data_dir.display()))?;
    let keys = TokenKeys::from_secret(secrets.token_secret.as_bytes())?;
    let node_token = NodeToken::new(&secrets.node_token);

    let user_db = open_sqlite(&settings.data_dir.join("user.db"))
        .await
        .context("opening user database")?;
    let users = UserService::new(user_db, keys.clone())
        .await
        .context("migrating user database")?;

    let studio_db = open_sqlite(&settings.data_dir.join("studio.db"))
        .await
        .context("opening studio database")?;
    let studio_settings = StudioSettings {
        default_ingest_url: settings.control.default_ingest_url.clone(),
        default_edge_http_url: settings.control.default_edge_http_url.clone(),
        allow_private_destinations: settings.allow_private_destinations.unwrap_or(false),
    };
    let studios = StudioService::new(studio_db, keys, node_token, studio_settings)
        .await
        .context("migrating studio database")?;

    let web = super::web::WebApp::new(settings.control.web_dir.clone());
    Ok(Router::new()
        .merge(users.router())
        .merge(studios.router())
        .route("/healthz", get(|| async { "ok" }))
        .fallback(move |request: Request| web.clone().serve(request))
        .method_not_allowed_fallback(ApiError::wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(request_span)))
}

/// Serves the control plane until `cancel` fires.
pub async fn run(
    settings: Settings,
    secrets: Secrets,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let app = router(&settings, &secrets).await?;
    let listener = TcpListener::bind(settings.control.listen)
        .await
        .with_context(|| format!("binding control API on {}", settings.control.listen))?;
    let bound = listener.local_addr().context("reading the bound address")?;
    tracing::info!(addr = %bound, "control API listening");
    buildstream_service::http::serve(listener, app, Limits::default(), cancel.cancelled_owned())
        .await
        .context("serving control API")
}

/// A span per request with method and matched route; one debug line with
/// status and latency when it completes.
async fn request_span(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    let span = tracing::debug_span!("request", %method, route = %route);
    let started = Instant::now();
    async move {
        let response = next.run(request).await;
        tracing::debug!(
            status = response.status().as_u16(),
            ms = started.elapsed().as_millis() as u64,
            "request done"
        );
        response
    }
    .instrument(span)
    .await
}
