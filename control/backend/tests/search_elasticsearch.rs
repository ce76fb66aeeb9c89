//! The Elasticsearch studio index against recorded request/response pairs.
//!
//! No Elasticsearch server can run where these tests run. Each recording in
//! `tests/elasticsearch/` lists, in order, the requests the index must send
//! for a scenario and the answers Elasticsearch 9 gives them. A loopback
//! HTTP server replays it: a request that differs from the next recorded
//! one (method, path, query parameters or JSON body) fails the test, and
//! so does a recorded request never sent.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use buildstream_backend::search::{
    ElasticsearchIndex, SearchError, Sort, StudioDoc, StudioIndex, StudioQuery,
};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
struct Recording {
    exchanges: Vec<Exchange>,
}

#[derive(Debug, Deserialize)]
struct Exchange {
    request: RecordedRequest,
    response: RecordedResponse,
}

#[derive(Debug, Deserialize)]
struct RecordedRequest {
    method: String,
    path: String,
    /// A JSON body.
    #[serde(default)]
    body: Option<Value>,
    /// A newline-delimited JSON body (bulk), one value per line.
    #[serde(default)]
    ndjson: Option<Vec<Value>>,
    /// Headers that must be sent with these values.
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
struct RecordedResponse {
    status: u16,
    body: Value,
}

struct Replay {
    pending: Mutex<VecDeque<Exchange>>,
    mismatches: Mutex<Vec<String>>,
}

/// A server answering from `name`'s recording, and its address.
struct Recorded {
    replay: Arc<Replay>,
    url: String,
    _server: tokio::task::JoinHandle<()>,
}

impl Recorded {
    async fn start(name: &str) -> Self {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/elasticsearch")
            .join(format!("{name}.json"));
        let text = std::fs::read_to_string(&path).expect("recording");
        let recording: Recording = serde_json::from_str(&text).expect("recording is valid");
        let replay = Arc::new(Replay {
            pending: Mutex::new(recording.exchanges.into()),
            mismatches: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(answer).with_state(replay.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            replay,
            url,
            _server: server,
        }
    }

    fn index(&self) -> ElasticsearchIndex {
        tls_provider();
        ElasticsearchIndex::new(&self.url, "studios").unwrap()
    }

    /// Every recorded request was sent, each as recorded.
    fn assert_done(&self) {
        let mismatches = self.replay.mismatches.lock().unwrap();
        assert!(mismatches.is_empty(), "requests differ: {mismatches:#?}");
        let pending = self.replay.pending.lock().unwrap();
        assert!(pending.is_empty(), "never sent: {:#?}", pending.front());
    }
}

/// The process's TLS provider, as the program installs it at start.
fn tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn answer(
    State(replay): State<Arc<Replay>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(exchange) = replay.pending.lock().unwrap().pop_front() else {
        let problem = format!("unexpected {method} {uri}");
        replay.mismatches.lock().unwrap().push(problem.clone());
        return (StatusCode::INTERNAL_SERVER_ERROR, problem).into_response();
    };
    if let Err(problem) = matches(&exchange.request, &method, &uri, &headers, &body) {
        let problem = format!(
            "{} {}: {problem}",
            exchange.request.method, exchange.request.path
        );
        replay.mismatches.lock().unwrap().push(problem.clone());
        return (StatusCode::INTERNAL_SERVER_ERROR, problem).into_response();
    }
    let status = StatusCode::from_u16(exchange.response.status).unwrap();
    (
        status,
        [
            ("content-type", "application/json"),
            ("x-elastic-product", "Elasticsearch"),
        ],
        exchange.response.body.to_string(),
    )
        .into_response()
}

fn matches(
    recorded: &RecordedRequest,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), String> {
    if method.as_str() != recorded.method {
        return Err(format!("method {method}"));
    }
    let (path, query) = recorded
        .path
        .split_once('?')
        .unwrap_or((recorded.path.as_str(), ""));
    if uri.path() != path {
        return Err(format!("path {}", uri.path()));
    }
    let params = |q: &str| -> BTreeMap<String, String> {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    };
    let sent_query = params(uri.query().unwrap_or(""));
    if sent_query != params(query) {
        return Err(format!("query {sent_query:?}"));
    }
    for (name, value) in &recorded.headers {
        let sent = headers.get(name.as_str()).and_then(|v| v.to_str().ok());
        if sent != Some(value.as_str()) {
            return Err(format!("header {name}: {sent:?}"));
        }
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match (&recorded.body, &recorded.ndjson) {
        (Some(expected), _) => {
            if !content_type.contains("json") {
                return Err(format!("content-type {content_type:?}"));
            }
            let sent: Value =
                serde_json::from_slice(body).map_err(|e| format!("body not JSON: {e}"))?;
            if &sent != expected {
                return Err(format!("body {sent}"));
            }
        }
        (None, Some(lines)) => {
            if !content_type.contains("json") {
                return Err(format!("content-type {content_type:?}"));
            }
            let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
            if !text.ends_with('\n') {
                return Err("bulk body does not end with a newline".into());
            }
            let sent: Vec<Value> = text
                .lines()
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("bulk line not JSON: {e}"))?;
            if &sent != lines {
                return Err(format!("bulk body {sent:?}"));
            }
        }
        (None, None) => {
            if !body.is_empty() {
                return Err(format!("unexpected body {}", String::from_utf8_lossy(body)));
            }
        }
    }
    Ok(())
}

fn studio(id: &str, name: &str, description: &str, tags: &[&str], created: u64) -> StudioDoc {
    StudioDoc {
        studio_id: id.into(),
        owner_id: "u_hana".into(),
        name: name.into(),
        description: description.into(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        live: false,
        created_at_ms: created,
    }
}

fn elasticsearch_error(result: Result<impl std::fmt::Debug, SearchError>) -> String {
    match result {
        Err(SearchError::Elasticsearch(message)) => message,
        other => panic!("expected an Elasticsearch error, got {other:?}"),
    }
}

#[tokio::test]
async fn the_index_is_created_with_its_mapping_once() {
    let es = Recorded::start("create_index").await;
    let index = es.index();
    assert!(index.prepare().await.unwrap(), "created");
    assert!(!index.prepare().await.unwrap(), "already there");
    es.assert_done();
}

#[tokio::test]
async fn studio_events_become_partial_updates_that_keep_the_live_state() {
    let es = Recorded::start("writes").await;
    let index = es.index();
    let morning = studio(
        "st_morning",
        "Morning Show",
        "News and guests every weekday",
        &["News", "talk"],
        1_764_000_000_000,
    );
    // Created: stored whole. Renamed: everything but `live` replaced.
    index.upsert(morning.clone()).await.unwrap();
    index.set_live("st_morning", true).await.unwrap();
    index
        .upsert(StudioDoc {
            name: "Morning Show Live".into(),
            ..morning
        })
        .await
        .unwrap();
    // A broadcast event for a studio the index never saw is ignored.
    index.set_live("st_unknown", true).await.unwrap();
    index.remove("st_morning").await.unwrap();
    // Removing what is gone already is done.
    index.remove("st_morning").await.unwrap();
    es.assert_done();
}

#[tokio::test]
async fn a_misspelt_search_with_filters_sends_one_query_and_reads_its_page() {
    let es = Recorded::start("search").await;
    let index = es.index();
    let page = index
        .search(&StudioQuery {
            text: Some("Mornng shwo".into()),
            owner: Some("u_hana".into()),
            live: Some(true),
            tags: vec!["News".into()],
            created_from_ms: Some(1_763_000_000_000),
            created_until_ms: Some(1_765_000_000_000),
            sort: Sort::Relevance,
            offset: 20,
            limit: 20,
        })
        .await
        .unwrap();
    assert_eq!(page.total, 21);
    assert_eq!(page.hits.len(), 1);
    let hit = &page.hits[0];
    assert_eq!(hit.studio_id, "st_morning");
    assert_eq!(hit.name, "Morning Show");
    assert_eq!(hit.tags, vec!["news", "talk"]);
    assert!(hit.live);
    assert_eq!(hit.created_at_ms, 1_764_000_000_000);

    // No words: newest first, filters only.
    let page = index
        .search(&StudioQuery {
            owner: Some("u_hana".into()),
            sort: Sort::Relevance,
            limit: 10,
            ..StudioQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.total, 2);
    let ids: Vec<&str> = page.hits.iter().map(|h| h.studio_id.as_str()).collect();
    assert_eq!(ids, ["st_evening", "st_morning"]);

    let page = index
        .search(&StudioQuery {
            owner: Some("u_hana".into()),
            sort: Sort::Oldest,
            limit: 10,
            ..StudioQuery::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = page.hits.iter().map(|h| h.studio_id.as_str()).collect();
    assert_eq!(ids, ["st_morning", "st_evening"]);
    es.assert_done();
}

#[tokio::test]
async fn a_rebuild_bulk_indexes_every_studio_and_deletes_the_rest() {
    let es = Recorded::start("replace_all").await;
    let index = es.index();
    let mut evening = studio(
        "st_evening",
        "Evening Wrap",
        "The day in ten minutes",
        &[],
        1_764_100_000_000,
    );
    evening.live = true;
    index
        .replace_all(vec![
            studio(
                "st_morning",
                "Morning Show",
                "News and guests every weekday",
                &["news"],
                1_764_000_000_000,
            ),
            evening,
        ])
        .await
        .unwrap();
    es.assert_done();
}

#[tokio::test]
async fn cluster_errors_are_reported_with_their_reason() {
    let es = Recorded::start("errors").await;
    let index = es.index();
    let busy = elasticsearch_error(index.search(&StudioQuery::default()).await);
    assert!(busy.contains("429"), "{busy}");
    assert!(busy.contains("es_rejected_execution_exception"), "{busy}");
    let down = elasticsearch_error(index.search(&StudioQuery::default()).await);
    assert!(down.contains("503"), "{down}");
    assert!(down.contains("all shards failed"), "{down}");
    let bulk = elasticsearch_error(
        index
            .replace_all(vec![studio("st_morning", "Morning Show", "", &[], 1)])
            .await,
    );
    assert!(bulk.contains("bulk indexing failed"), "{bulk}");
    assert!(bulk.contains("mapper_parsing_exception"), "{bulk}");
    let odd = elasticsearch_error(index.prepare().await);
    assert!(odd.contains("invalid_index_name_exception"), "{odd}");
    es.assert_done();
}

#[tokio::test]
async fn a_cluster_that_does_not_answer_is_an_error_not_a_hang() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    tls_provider();
    let index = ElasticsearchIndex::new(&url, "studios").unwrap();
    let message = elasticsearch_error(index.search(&StudioQuery::default()).await);
    assert!(message.contains("cannot reach"), "{message}");
}

#[test]
fn settings_that_cannot_work_are_refused_up_front() {
    tls_provider();
    for url in ["not a url", "ftp://127.0.0.1:9200"] {
        assert!(
            matches!(
                ElasticsearchIndex::new(url, "studios"),
                Err(SearchError::Config(_))
            ),
            "{url}"
        );
    }
}

#[tokio::test]
async fn credentials_in_the_url_become_basic_authentication() {
    let es = Recorded::start("authenticated").await;
    let url = es.url.replace("http://", "http://indexer:p%40ss@");
    tls_provider();
    let index = ElasticsearchIndex::new(&url, "studios").unwrap();
    index.remove("st_gone").await.unwrap();
    es.assert_done();
}
