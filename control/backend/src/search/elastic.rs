//! Studio search on Elasticsearch, for deployments where the studio
//! instances share one index.
//!
//! Tested against recorded request/response pairs, not a live server: no
//! Elasticsearch can run where this project's tests run, so none could be
//! captured from one either. The recordings
//! (`control/backend/tests/elasticsearch/*.json`) are written from the
//! Elasticsearch 9 REST API reference, answers included;
//! `tests/search_elasticsearch.rs` replays them from a loopback HTTP server
//! that fails the test on any request that differs from the recorded one.
//! A change to a query here shows up there as a changed recording; check
//! such a change against a real cluster before relying on it.
//!
//! Writes are not refreshed: a change is searchable after the index's
//! refresh interval (one second unless the index says otherwise).

use std::time::Duration;

use async_trait::async_trait;
use elasticsearch::auth::Credentials;
use elasticsearch::http::request::JsonBody;
use elasticsearch::http::response::Response;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::http::StatusCode;
use elasticsearch::indices::IndicesCreateParts;
use elasticsearch::params::Conflicts;
use elasticsearch::{
    BulkParts, DeleteByQueryParts, DeleteParts, Elasticsearch, SearchParts, UpdateParts,
};
use serde_json::{json, Value};
use url::Url;

use super::{words, SearchError, SearchPage, Sort, StudioDoc, StudioIndex, StudioQuery};

/// Time allowed for one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Studios per bulk request in a rebuild.
const BULK_CHUNK: usize = 500;
/// Tries of an update that meets a concurrent one (another instance
/// handling the same studio's events).
const RETRY_ON_CONFLICT: i64 = 3;

/// An Elasticsearch index of studios.
pub struct ElasticsearchIndex {
    client: Elasticsearch,
    index: String,
}

impl ElasticsearchIndex {
    /// A client of the cluster at `url` (`http://user:password@host:9200`;
    /// credentials in the URL become basic authentication), for the index
    /// named `index`. Nothing is sent until it is used. The process's
    /// rustls crypto provider must be installed.
    pub fn new(url: &str, index: &str) -> Result<Self, SearchError> {
        // The HTTP client takes the process's TLS provider, which the
        // program installs at start.
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(SearchError::Config(
                "no TLS crypto provider is installed in this process".into(),
            ));
        }
        let mut url = Url::parse(url).map_err(|err| SearchError::Config(err.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(SearchError::Config(format!(
                "elasticsearch URL must be http or https, not {}",
                url.scheme()
            )));
        }
        let credentials = (!url.username().is_empty()).then(|| {
            let user = decode(url.username());
            let password = decode(url.password().unwrap_or(""));
            Credentials::Basic(user, password)
        });
        let _ = url.set_username("");
        let _ = url.set_password(None);
        let mut transport =
            TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(REQUEST_TIMEOUT);
        if let Some(credentials) = credentials {
            transport = transport.auth(credentials);
        }
        let transport = transport
            .build()
            .map_err(|err| SearchError::Config(err.to_string()))?;
        Ok(Self {
            client: Elasticsearch::new(transport),
            index: index.to_owned(),
        })
    }

    /// Creates the index with its mapping unless it exists. True when it
    /// was created (and so is empty).
    async fn ensure_index(&self) -> Result<bool, SearchError> {
        let response = self
            .client
            .indices()
            .create(IndicesCreateParts::Index(&self.index))
            .body(mapping())
            .send()
            .await
            .map_err(unreachable)?;
        let created = checked_unless(
            response,
            StatusCode::BAD_REQUEST,
            "resource_already_exists_exception",
        )
        .await?;
        Ok(created.is_some())
    }

    /// Sends a partial update of one studio; one not in the index is left
    /// out.
    async fn update(&self, studio_id: &str, body: Value) -> Result<(), SearchError> {
        let response = self
            .client
            .update(UpdateParts::IndexId(&self.index, studio_id))
            .retry_on_conflict(RETRY_ON_CONFLICT)
            .body(body)
            .send()
            .await
            .map_err(unreachable)?;
        checked_unless(
            response,
            StatusCode::NOT_FOUND,
            "document_missing_exception",
        )
        .await
        .map(|_| ())
    }

    async fn bulk_index(&self, docs: &[StudioDoc]) -> Result<(), SearchError> {
        let mut lines: Vec<JsonBody<Value>> = Vec::with_capacity(docs.len() * 2);
        for doc in docs {
            lines.push(json!({ "index": { "_id": doc.studio_id } }).into());
            lines.push(source(doc).into());
        }
        let response = self
            .client
            .bulk(BulkParts::Index(&self.index))
            .body(lines)
            .send()
            .await
            .map_err(unreachable)?;
        let body = checked(response).await?;
        if body["errors"].as_bool() == Some(true) {
            let first = body["items"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|item| item["index"].get("error"))
                .map(reason)
                .unwrap_or_else(|| "unknown".to_owned());
            return Err(SearchError::Elasticsearch(format!(
                "bulk indexing failed: {first}"
            )));
        }
        Ok(())
    }
}

#[async_trait]
impl StudioIndex for ElasticsearchIndex {
    async fn prepare(&self) -> Result<bool, SearchError> {
        self.ensure_index().await
    }

    async fn upsert(&self, doc: StudioDoc) -> Result<(), SearchError> {
        // Everything but `live`, which only broadcast events change; a new
        // studio is stored whole.
        let mut fields = source(&doc);
        if let Some(fields) = fields.as_object_mut() {
            fields.remove("live");
        }
        let body = json!({ "doc": fields, "upsert": source(&doc) });
        self.update(&doc.studio_id, body).await
    }

    async fn set_live(&self, studio_id: &str, live: bool) -> Result<(), SearchError> {
        let body = json!({ "doc": { "live": live } });
        self.update(studio_id, body).await
    }

    async fn remove(&self, studio_id: &str) -> Result<(), SearchError> {
        let response = self
            .client
            .delete(DeleteParts::IndexId(&self.index, studio_id))
            .send()
            .await
            .map_err(unreachable)?;
        if response.status_code() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        checked(response).await.map(|_| ())
    }

    async fn replace_all(&self, docs: Vec<StudioDoc>) -> Result<(), SearchError> {
        for chunk in docs.chunks(BULK_CHUNK) {
            self.bulk_index(chunk).await?;
        }
        let keep: Vec<&str> = docs.iter().map(|d| d.studio_id.as_str()).collect();
        let response = self
            .client
            .delete_by_query(DeleteByQueryParts::Index(&[&self.index]))
            .conflicts(Conflicts::Proceed)
            .refresh(true)
            .body(json!({ "query": { "bool": { "must_not": { "ids": { "values": keep } } } } }))
            .send()
            .await
            .map_err(unreachable)?;
        checked(response).await.map(|_| ())
    }

    async fn search(&self, query: &StudioQuery) -> Result<SearchPage, SearchError> {
        let response = self
            .client
            .search(SearchParts::Index(&[&self.index]))
            .body(search_body(query))
            .send()
            .await
            .map_err(unreachable)?;
        let body = checked(response).await?;
        let hits = &body["hits"];
        let total = hits["total"]["value"].as_u64().unwrap_or(0);
        let hits = hits["hits"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|hit| {
                serde_json::from_value::<StudioDoc>(hit["_source"].clone()).map_err(|err| {
                    SearchError::Elasticsearch(format!("unreadable studio in the index: {err}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SearchPage { total, hits })
    }
}

/// Settings and mapping of a new index: names and descriptions analysed
/// (lowercased, accents folded), everything else exact.
fn mapping() -> Value {
    json!({
        "settings": {
            "analysis": {
                "analyzer": {
                    "studio_text": {
                        "type": "custom",
                        "tokenizer": "standard",
                        "filter": ["lowercase", "asciifolding"]
                    }
                }
            }
        },
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "studio_id": { "type": "keyword" },
                "owner_id": { "type": "keyword" },
                "name": { "type": "text", "analyzer": "studio_text" },
                "description": { "type": "text", "analyzer": "studio_text" },
                "tags": { "type": "keyword" },
                "live": { "type": "boolean" },
                "created_at_ms": { "type": "date", "format": "epoch_millis" }
            }
        }
    })
}

/// A studio as stored, tags lowercase.
fn source(doc: &StudioDoc) -> Value {
    json!({
        "studio_id": doc.studio_id,
        "owner_id": doc.owner_id,
        "name": doc.name,
        "description": doc.description,
        "tags": doc.tags.iter().map(|t| t.to_lowercase()).collect::<Vec<_>>(),
        "live": doc.live,
        "created_at_ms": doc.created_at_ms,
    })
}

/// The request body of a search: the same matching as the embedded index
/// (every word must be found in name or description, exactly, within the
/// typos its length allows, or as the start of a word; name weighs
/// double), filters that do not score, and the order asked for.
fn search_body(query: &StudioQuery) -> Value {
    let text: Vec<String> = query.text.as_deref().map(words).unwrap_or_default();
    let must: Vec<Value> = text
        .iter()
        .map(|word| {
            json!({ "bool": { "should": [
                { "match": { "name": { "query": word, "fuzziness": "AUTO:4,8", "boost": 2.0 } } },
                { "match": { "description": { "query": word, "fuzziness": "AUTO:4,8" } } },
                { "prefix": { "name": { "value": word, "boost": 1.0 } } },
                { "prefix": { "description": { "value": word, "boost": 0.5 } } }
            ], "minimum_should_match": 1 } })
        })
        .collect();
    let mut filter: Vec<Value> = Vec::new();
    if let Some(owner) = &query.owner {
        filter.push(json!({ "term": { "owner_id": owner } }));
    }
    if let Some(live) = query.live {
        filter.push(json!({ "term": { "live": live } }));
    }
    for tag in &query.tags {
        filter.push(json!({ "term": { "tags": tag.to_lowercase() } }));
    }
    if query.created_from_ms.is_some() || query.created_until_ms.is_some() {
        let mut range = serde_json::Map::new();
        if let Some(from) = query.created_from_ms {
            range.insert("gte".into(), json!(from));
        }
        if let Some(until) = query.created_until_ms {
            range.insert("lt".into(), json!(until));
        }
        filter.push(json!({ "range": { "created_at_ms": range } }));
    }
    let newest = json!([{ "created_at_ms": "desc" }, { "studio_id": "asc" }]);
    let sort = match (query.sort, text.is_empty()) {
        (Sort::Relevance, false) => json!(["_score", { "created_at_ms": "desc" }]),
        (Sort::Oldest, _) => json!([{ "created_at_ms": "asc" }, { "studio_id": "asc" }]),
        _ => newest,
    };
    json!({
        "from": query.offset,
        "size": query.limit.clamp(1, 100),
        "track_total_hits": true,
        "query": { "bool": { "must": must, "filter": filter } },
        "sort": sort,
    })
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

fn unreachable(err: elasticsearch::Error) -> SearchError {
    SearchError::Elasticsearch(format!("cannot reach the cluster: {err}"))
}

async fn response_json(response: Response) -> Result<Value, SearchError> {
    let status = response.status_code();
    let text = response.text().await.map_err(unreachable)?;
    serde_json::from_str(&text).map_err(|_| {
        SearchError::Elasticsearch(format!(
            "answered {status} with a body that is not JSON: {}",
            text.chars().take(200).collect::<String>()
        ))
    })
}

/// The body of a successful response, or the error it reports.
async fn checked(response: Response) -> Result<Value, SearchError> {
    let status = response.status_code();
    let body = response_json(response).await?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(refused(status, &body))
    }
}

/// Like [`checked`], except that an answer of `status` reporting an error
/// of type `expected` is `None` (the outcome the caller can live with:
/// already there, not there).
async fn checked_unless(
    response: Response,
    status: StatusCode,
    expected: &str,
) -> Result<Option<Value>, SearchError> {
    if response.status_code() != status {
        return checked(response).await.map(Some);
    }
    let body = response_json(response).await?;
    if body["error"]["type"].as_str() == Some(expected) {
        Ok(None)
    } else {
        Err(refused(status, &body))
    }
}

fn reason(error: &Value) -> String {
    match (error["type"].as_str(), error["reason"].as_str()) {
        (Some(kind), Some(reason)) => format!("{kind}: {reason}"),
        (Some(kind), None) => kind.to_owned(),
        _ => error.to_string(),
    }
}

fn refused(status: StatusCode, body: &Value) -> SearchError {
    SearchError::Elasticsearch(format!("answered {status}: {}", reason(&body["error"])))
}
