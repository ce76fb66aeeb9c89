//! A search index that several studio instances share (Elasticsearch in
//! production) is fed from one durable RabbitMQ queue: one instance at a
//! time consumes it, in order, each event applied once; when that instance
//! stops, another takes over. The shared index here is one tantivy index
//! that counts what it is asked to do, on MariaDB, Redis and RabbitMQ.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use buildstream_backend::bus::{self, EventSender};
use buildstream_backend::search::{
    SearchError, SearchPage, StudioDoc, StudioIndex, StudioQuery, TantivyIndex,
};
use buildstream_backend::testing::{self, unique_name, TestDatabase};
use buildstream_service::{NodeToken, TokenKeys};
use buildstream_studio::{IndexFeed, StudioService, StudioSettings};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// A shared index that counts the writes of each studio.
struct Counting {
    inner: TantivyIndex,
    writes: Mutex<HashMap<String, Vec<&'static str>>>,
}

impl Counting {
    fn note(&self, studio: &str, what: &'static str) {
        let mut writes = self.writes.lock().unwrap();
        writes.entry(studio.to_owned()).or_default().push(what);
    }

    fn writes_of(&self, studio: &str) -> Vec<&'static str> {
        self.writes
            .lock()
            .unwrap()
            .get(studio)
            .cloned()
            .unwrap_or_default()
    }
}

#[async_trait]
impl StudioIndex for Counting {
    async fn prepare(&self) -> Result<bool, SearchError> {
        self.inner.prepare().await
    }
    async fn upsert(&self, doc: StudioDoc) -> Result<(), SearchError> {
        self.note(&doc.studio_id, "upsert");
        self.inner.upsert(doc).await
    }
    async fn set_live(&self, studio_id: &str, live: bool) -> Result<(), SearchError> {
        self.inner.set_live(studio_id, live).await
    }
    async fn remove(&self, studio_id: &str) -> Result<(), SearchError> {
        self.note(studio_id, "remove");
        self.inner.remove(studio_id).await
    }
    async fn replace_all(&self, docs: Vec<StudioDoc>) -> Result<(), SearchError> {
        self.inner.replace_all(docs).await
    }
    async fn search(&self, query: &StudioQuery) -> Result<SearchPage, SearchError> {
        self.inner.search(query).await
    }
}

async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    body: Value,
    token: &str,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .body(if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        })
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn instances_sharing_an_index_apply_each_event_once_and_take_over_from_each_other() {
    let db = TestDatabase::mysql().await;
    let keys = TokenKeys::from_secret(&[7u8; 32]).unwrap();
    let cache = testing::cache(true).await;
    let bus = bus::open(Some(&testing::amqp_url())).await.unwrap();
    let index = Arc::new(Counting {
        inner: TantivyIndex::in_memory().unwrap(),
        writes: Mutex::new(HashMap::new()),
    });
    // The queue is there already, as in a running deployment: no event is
    // published before it exists.
    let queue = unique_name("test.studio-search.");
    drop(
        bus.subscribe(&queue, &["studio.*", "broadcast.*"])
            .await
            .unwrap(),
    );
    let mut instances = Vec::new();
    for _ in 0..2 {
        let service = StudioService::new(
            db.db.clone(),
            cache.clone(),
            EventSender::start(bus.clone()),
            index.clone(),
            keys.clone(),
            NodeToken::new("node-token"),
            StudioSettings {
                default_ingest_url: "rtmp://127.0.0.1:1935/live".into(),
                default_edge_http_url: "http://127.0.0.1:8082".into(),
                allow_private_destinations: false,
            },
        )
        .await
        .unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(service.clone().run_indexer(
            bus.clone(),
            IndexFeed::Shared {
                queue: queue.clone(),
                cache: cache.clone(),
            },
            stop.clone(),
        ));
        instances.push((service.router(), stop));
    }
    let token = keys.issue("u_shared").unwrap();

    // Studios created and deleted through both instances in turn.
    let mut created = Vec::new();
    for i in 0..20 {
        let (app, _) = &instances[i % 2];
        let (status, body) = call(
            app,
            "POST",
            "/api/v1/studios",
            json!({"name": format!("Shared show {i}")}),
            &token,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        created.push(body["id"].as_str().unwrap().to_owned());
    }
    for id in created.iter().step_by(4) {
        let (app, _) = &instances[1];
        let (status, _) = call(
            app,
            "DELETE",
            &format!("/api/v1/studios/{id}"),
            Value::Null,
            &token,
        )
        .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let expect_total = |n: u64| {
        let app = instances[0].0.clone();
        let token = token.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let (_, found) = call(
                    &app,
                    "GET",
                    "/api/v1/search/studios?per_page=100",
                    Value::Null,
                    &token,
                )
                .await;
                if found["total"] == n {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "expected {n} studios, index has {found}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    // Every event applied, once, in order (whatever the rebuild at start
    // indexed besides).
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, id) in created.iter().enumerate() {
        let expected: &[&str] = if i % 4 == 0 {
            &["upsert", "remove"]
        } else {
            &["upsert"]
        };
        while index.writes_of(id).len() < expected.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(
            index.writes_of(id),
            expected,
            "studio {i}, in order and once each"
        );
    }
    expect_total(15).await;

    // The first instance's indexer stops (whichever was consuming): the
    // other carries on with what comes next.
    instances[0].1.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = call(
        &instances[1].0,
        "POST",
        "/api/v1/studios",
        json!({"name": "After the handover"}),
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let late = body["id"].as_str().unwrap().to_owned();
    expect_total(16).await;
    assert_eq!(index.writes_of(&late), ["upsert"]);

    instances[1].1.cancel();
    drop(instances);
    testing::delete_amqp_queues(&[&queue]).await;
}
