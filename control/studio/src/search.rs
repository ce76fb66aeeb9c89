//! Studio search: `GET /api/v1/search/studios`, over an index that follows
//! the studio events.
//!
//! The indexer subscribes first and then indexes every studio from the
//! database, so that nothing changed during start-up is missed; events
//! after that keep the index current. Searches see the caller's own
//! studios only.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use buildstream_backend::bus::Subscription;
use buildstream_backend::search::{SearchPage, Sort, StudioDoc, StudioQuery};
use buildstream_backend::{Event, SharedBus, SharedCache};
use buildstream_service::openapi::ErrorBody;
use buildstream_service::{ApiError, ApiQuery, UserAuth};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::store::StudioRow;
use crate::StudioService;

/// Results per page unless asked otherwise, and at most.
const DEFAULT_PER_PAGE: usize = 20;
const MAX_PER_PAGE: usize = 100;

pub fn routes() -> Router<StudioService> {
    Router::new().route("/api/v1/search/studios", get(search))
}

/// This module's part of the service's OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(search))]
pub(crate) struct Paths;

/// Query string of a search.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchParams {
    /// Words to find in name or description, typos forgiven.
    q: Option<String>,
    /// `true`: only live studios; `false`: only those not live.
    live: Option<bool>,
    /// Comma-separated tags, all required.
    tags: Option<String>,
    /// RFC 3339: created at or after.
    created_after: Option<String>,
    /// RFC 3339: created before.
    created_before: Option<String>,
    /// `relevance` (default), `newest` or `oldest`.
    sort: Option<Sort>,
    /// 1-based.
    page: Option<usize>,
    /// 1-100, 20 by default.
    per_page: Option<usize>,
}

#[utoipa::path(
    get,
    path = "/api/v1/search/studios",
    tag = "search",
    security(("user" = [])),
    params(SearchParams),
    responses(
        (status = 200, description = "A page of the caller's studios, best match first", body = SearchPage),
        (status = 400, description = "Invalid input", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 503, description = "The index is unavailable", body = ErrorBody),
    ),
)]
async fn search(
    State(service): State<StudioService>,
    auth: UserAuth,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Result<Json<SearchPage>, ApiError> {
    let per_page = params.per_page.unwrap_or(DEFAULT_PER_PAGE);
    if !(1..=MAX_PER_PAGE).contains(&per_page) {
        return Err(ApiError::invalid(
            "invalid_per_page",
            format!("per_page must be 1-{MAX_PER_PAGE}"),
        ));
    }
    let page = params.page.unwrap_or(1).max(1);
    if let Some(q) = &params.q {
        if q.chars().count() > 200 {
            return Err(ApiError::invalid(
                "invalid_query",
                "q is limited to 200 characters",
            ));
        }
    }
    let query = StudioQuery {
        text: params.q,
        owner: Some(auth.user_id),
        live: params.live,
        tags: params
            .tags
            .map(|tags| {
                tags.split(',')
                    .map(|t| t.trim().to_lowercase())
                    .filter(|t| !t.is_empty())
                    .take(10)
                    .collect()
            })
            .unwrap_or_default(),
        created_from_ms: instant("created_after", params.created_after.as_deref())?,
        created_until_ms: instant("created_before", params.created_before.as_deref())?,
        sort: params.sort.unwrap_or_default(),
        offset: (page - 1).saturating_mul(per_page).min(10_000),
        limit: per_page,
    };
    let found = service
        .index
        .search(&query)
        .await
        .map_err(|err| ApiError::unavailable("search_unavailable", err.to_string()))?;
    Ok(Json(found))
}

fn instant(name: &str, value: Option<&str>) -> Result<Option<u64>, ApiError> {
    value
        .map(|text| {
            rfc3339_ms(text).ok_or_else(|| {
                ApiError::invalid(
                    "invalid_time",
                    format!("{name} must be an RFC 3339 time, like 2026-01-31T12:00:00Z"),
                )
            })
        })
        .transpose()
}

fn rfc3339_ms(text: &str) -> Option<u64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// What an event or a row says of a studio, as the index holds it.
fn doc_of(data: &serde_json::Value) -> Option<StudioDoc> {
    let text = |key: &str| data.get(key)?.as_str().map(str::to_owned);
    Some(StudioDoc {
        studio_id: text("studio_id")?,
        owner_id: text("owner_id")?,
        name: text("name").unwrap_or_default(),
        description: text("description").unwrap_or_default(),
        tags: data
            .get("tags")
            .and_then(|tags| serde_json::from_value(tags.clone()).ok())
            .unwrap_or_default(),
        live: false,
        created_at_ms: text("created_at").and_then(|t| rfc3339_ms(&t)).unwrap_or(0),
    })
}

fn doc_of_row(row: &StudioRow) -> StudioDoc {
    StudioDoc {
        studio_id: row.id.clone(),
        owner_id: row.owner_id.clone(),
        name: row.name.clone(),
        description: row.description.clone(),
        tags: row.tags(),
        live: false,
        created_at_ms: rfc3339_ms(&row.created_at).unwrap_or(0),
    }
}

/// Where the search index gets its events from.
#[derive(Clone)]
pub enum IndexFeed {
    /// An index of this process's own (tantivy in memory): a queue of its
    /// own, and a rebuild from the database at every start.
    Own,
    /// An index every instance shares (Elasticsearch), rebuilt from the
    /// database only when it had to be created.
    Shared {
        /// The durable queue, consumed by one instance at a time, in order.
        queue: String,
        /// Where handled event ids are kept, so none is applied twice.
        cache: SharedCache,
    },
}

const PATTERNS: [&str; 2] = ["studio.*", "broadcast.*"];

impl StudioService {
    /// Keeps the search index following the studio events until `cancel`
    /// fires. The queue exists before the index is filled from the
    /// database, so that nothing changed during start-up is missed.
    pub async fn run_indexer(self, bus: SharedBus, feed: IndexFeed, cancel: CancellationToken) {
        match feed {
            IndexFeed::Own => {
                let Some(mut subscription) =
                    until_done(&cancel, "subscribe", || bus.subscribe_own(&PATTERNS)).await
                else {
                    return;
                };
                if until_done(&cancel, "reindex", || self.index_everything())
                    .await
                    .is_none()
                {
                    return;
                }
                self.follow(&mut subscription, cancel).await;
            }
            IndexFeed::Shared { queue, cache } => {
                // Declares the queue: events wait in it from now on.
                if until_done(&cancel, "subscribe", || bus.subscribe(&queue, &PATTERNS))
                    .await
                    .is_none()
                {
                    return;
                }
                let lock = format!("{queue}:rebuilding");
                if until_done(&cancel, "prepare the index", || {
                    self.rebuild_if_new(&cache, &lock)
                })
                .await
                .is_none()
                {
                    return;
                }
                loop {
                    let (service, lock, waits) = (self.clone(), lock.clone(), cache.clone());
                    let consumed = buildstream_backend::bus::consume(
                        bus.clone(),
                        cache.clone(),
                        &queue,
                        &PATTERNS,
                        move |event| {
                            let (service, lock, waits) =
                                (service.clone(), lock.clone(), waits.clone());
                            async move {
                                // Events wait while an instance fills a new
                                // index from the database.
                                while waits.get(&lock).await.map_err(|e| e.to_string())?.is_some() {
                                    tokio::time::sleep(Duration::from_millis(200)).await;
                                }
                                let span = buildstream_service::telemetry::event_span(&event);
                                service.apply(&event).instrument(span).await
                            }
                        },
                        cancel.clone(),
                    )
                    .await;
                    match consumed {
                        Ok(()) => return,
                        Err(err) => {
                            tracing::warn!(%queue, error = %err, "search indexer lost its queue; resubscribing");
                            tokio::select! {
                                _ = cancel.cancelled() => return,
                                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                            }
                        }
                    }
                }
            }
        }
    }

    /// Gets a shared index ready; one that had to be created is filled
    /// from the database by this instance, holding `lock` so that no
    /// instance applies events meanwhile (they wait in the queue and are
    /// applied after, in order). An instance that finds the lock taken
    /// leaves the work to its holder.
    async fn rebuild_if_new(&self, cache: &SharedCache, lock: &str) -> Result<(), String> {
        const REBUILD_AT_MOST: Duration = Duration::from_secs(600);
        let taken = cache
            .set_if_absent(lock, "1", REBUILD_AT_MOST)
            .await
            .map_err(|err| err.to_string())?;
        if !taken {
            return Ok(());
        }
        let result = match self.index.prepare().await {
            Ok(true) => self.index_everything().await,
            Ok(false) => Ok(()),
            Err(err) => Err(err.to_string()),
        };
        if let Err(err) = cache.delete(lock).await {
            tracing::warn!(error = %err, "search rebuild lock not released; it expires");
        }
        result
    }

    async fn index_everything(&self) -> Result<(), String> {
        let live = self
            .store
            .live_studio_ids()
            .await
            .map_err(|err| err.message)?;
        let docs: Vec<StudioDoc> = self
            .store
            .all_studios()
            .await
            .map_err(|err| err.message)?
            .iter()
            .map(|row| StudioDoc {
                live: live.contains(&row.id),
                ..doc_of_row(row)
            })
            .collect();
        let count = docs.len();
        self.index
            .replace_all(docs)
            .await
            .map_err(|err| err.to_string())?;
        tracing::info!(studios = count, "search index rebuilt");
        Ok(())
    }

    async fn follow(&self, subscription: &mut Subscription, cancel: CancellationToken) {
        loop {
            let delivery = tokio::select! {
                _ = cancel.cancelled() => return,
                delivery = subscription.next() => match delivery {
                    Some(delivery) => delivery,
                    None => return,
                },
            };
            let span = buildstream_service::telemetry::event_span(&delivery.event);
            match self.apply(&delivery.event).instrument(span).await {
                Ok(()) => {
                    let _ = delivery.ack().await;
                }
                Err(err) => {
                    tracing::warn!(event = %delivery.event.id, kind = %delivery.event.kind,
                        error = %err, "search index update failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = delivery.requeue().await;
                }
            }
        }
    }

    async fn apply(&self, event: &Event) -> Result<(), String> {
        let studio_id = event.data.get("studio_id").and_then(|v| v.as_str());
        let result = match (event.kind.as_str(), studio_id) {
            ("studio.created" | "studio.updated", _) => match doc_of(&event.data) {
                Some(doc) => self.index.upsert(doc).await,
                None => return Ok(()),
            },
            ("studio.deleted", Some(id)) => self.index.remove(id).await,
            ("broadcast.started", Some(id)) => self.index.set_live(id, true).await,
            ("broadcast.stopped", Some(id)) => self.index.set_live(id, false).await,
            _ => return Ok(()),
        };
        result.map_err(|err| err.to_string())
    }
}

/// Runs `step` until it succeeds, every two seconds; `None` if `cancel`
/// fires first.
async fn until_done<T, E, F, Fut>(cancel: &CancellationToken, what: &str, mut step: F) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
{
    loop {
        let result = tokio::select! {
            _ = cancel.cancelled() => return None,
            result = step() => result,
        };
        match result {
            Ok(value) => return Some(value),
            Err(err) => {
                tracing::warn!(error = %err, "search indexer cannot {what}; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                }
            }
        }
    }
}
