//! The studio service's HTTP API, called through its router with real
//! tokens and an in-memory SQLite database.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use std::sync::Arc;

use buildstream_backend::bus::{self, EventSender, SharedBus};
use buildstream_backend::search::TantivyIndex;
use buildstream_backend::testing::{self, unique_name, TestDatabase};
use buildstream_service::{NodeToken, TokenKeys};
use buildstream_studio::{IndexFeed, StudioService, StudioSettings};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const NODE_TOKEN: &str = "node-token-for-tests";

struct Harness {
    app: Router,
    keys: TokenKeys,
    /// Where the service's events go: in process with SQLite, RabbitMQ
    /// with MySQL.
    bus: SharedBus,
    _db: TestDatabase,
}

impl Harness {
    /// The service on SQLite, then on MySQL: every test runs on both.
    async fn both() -> [Self; 2] {
        [
            Self::new(TestDatabase::sqlite().await).await,
            Self::new(TestDatabase::mysql().await).await,
        ]
    }

    async fn new(db: TestDatabase) -> Self {
        eprintln!("-- {}", db.label);
        let keys = TokenKeys::from_secret(&[9u8; 32]).unwrap();
        // MySQL goes with Redis and RabbitMQ, SQLite with the in-process
        // cache and bus.
        let real = db.label == "MySQL";
        let bus = bus::open(real.then(testing::amqp_url).as_deref())
            .await
            .unwrap();
        let service = StudioService::new(
            db.db.clone(),
            testing::cache(real).await,
            EventSender::start(bus.clone()),
            Arc::new(TantivyIndex::in_memory().unwrap()),
            keys.clone(),
            NodeToken::new(NODE_TOKEN),
            StudioSettings {
                default_ingest_url: "rtmp://127.0.0.1:1935/live".into(),
                default_edge_http_url: "http://127.0.0.1:8082".into(),
                allow_private_destinations: false,
            },
        )
        .await
        .unwrap();
        tokio::spawn(service.clone().run_indexer(
            bus.clone(),
            IndexFeed::Own,
            CancellationToken::new(),
        ));
        Self {
            app: service.router(),
            keys,
            bus,
            _db: db,
        }
    }

    fn token(&self, user: &str) -> String {
        self.keys.issue(user).unwrap()
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        body: Value,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let body = if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        };
        let response = self
            .app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn studio(&self, token: &str, name: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/api/v1/studios",
                json!({"name": name}),
                Some(token),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }
}

#[tokio::test]
async fn studio_crud_with_defaults() {
    for h in Harness::both().await {
        let alice = h.token("u_alice");
        let id = h.studio(&alice, "Morning Show").await;

        let (status, studio) = h
            .call(
                "GET",
                &format!("/api/v1/studios/{id}"),
                Value::Null,
                Some(&alice),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            studio["output"],
            json!({"width": 1280, "height": 720, "fps": 30})
        );
        assert_eq!(studio["scene"]["layout"], "solo");
        assert_eq!(studio["live"], false);

        let (status, studio) = h
            .call(
                "PATCH",
                &format!("/api/v1/studios/{id}"),
                json!({"name": "Evening Show", "output": {"width": 1920, "height": 1080, "fps": 30}}),
                Some(&alice),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{studio}");
        assert_eq!(studio["name"], "Evening Show");
        assert_eq!(studio["output"]["width"], 1920);

        let (status, body) = h
            .call(
                "PATCH",
                &format!("/api/v1/studios/{id}"),
                json!({"output": {"width": 640, "height": 480, "fps": 30}}),
                Some(&alice),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_output");

        // Names are one line of printable text.
        for name in [
            "Evening\u{0}Show",
            "Evening\u{1b}[31mShow",
            "Evening\nShow",
            "\u{202e}evil\u{200b}",
        ] {
            let (status, body) = h
                .call(
                    "PATCH",
                    &format!("/api/v1/studios/{id}"),
                    json!({ "name": name }),
                    Some(&alice),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}");
            assert_eq!(body["error"]["code"], "invalid_name");
        }

        let (_, list) = h
            .call(
                "GET",
                "/api/v1/studios?q=evening",
                Value::Null,
                Some(&alice),
            )
            .await;
        assert_eq!(list.as_array().unwrap().len(), 1);
        let (_, list) = h
            .call(
                "GET",
                "/api/v1/studios?q=morning",
                Value::Null,
                Some(&alice),
            )
            .await;
        assert_eq!(list.as_array().unwrap().len(), 0);

        let (status, _) = h
            .call(
                "DELETE",
                &format!("/api/v1/studios/{id}"),
                Value::Null,
                Some(&alice),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = h
            .call(
                "GET",
                &format!("/api/v1/studios/{id}"),
                Value::Null,
                Some(&alice),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn other_users_studios_are_not_found() {
    for h in Harness::both().await {
        let alice = h.token("u_alice");
        let mallory = h.token("u_mallory");
        let id = h.studio(&alice, "Private").await;
        for (method, uri, body) in [
            ("GET", format!("/api/v1/studios/{id}"), Value::Null),
            (
                "PATCH",
                format!("/api/v1/studios/{id}"),
                json!({"name": "x"}),
            ),
            ("DELETE", format!("/api/v1/studios/{id}"), Value::Null),
            (
                "POST",
                format!("/api/v1/studios/{id}/sources"),
                json!({"kind": "rtmp", "name": "cam"}),
            ),
            (
                "PUT",
                format!("/api/v1/studios/{id}/scene"),
                json!({"layout": "solo"}),
            ),
            (
                "POST",
                format!("/api/v1/studios/{id}/broadcast"),
                Value::Null,
            ),
        ] {
            let (status, body) = h.call(method, &uri, body, Some(&mallory)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}");
            assert_eq!(body["error"]["code"], "not_found");
        }
        let (_, list) = h
            .call("GET", "/api/v1/studios", Value::Null, Some(&mallory))
            .await;
        assert_eq!(list, json!([]));
        let (status, _) = h.call("GET", "/api/v1/studios", Value::Null, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn source_key_authorizes_ingest_once_rotated_old_key_fails() {
    for h in Harness::both().await {
        let alice = h.token("u_alice");
        let id = h.studio(&alice, "Show").await;
        let (status, source) = h
            .call(
                "POST",
                &format!("/api/v1/studios/{id}/sources"),
                json!({"kind": "rtmp", "name": "Camera"}),
                Some(&alice),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
        let key = source["stream_key"].as_str().unwrap().to_owned();
        assert!(key.len() >= 5 + 32, "key has at least 128 bits");
        assert_eq!(source["ingest_url"], "rtmp://127.0.0.1:1935/live");
        assert_eq!(
            source["publish_url"],
            format!("rtmp://127.0.0.1:1935/live/{key}")
        );

        // Listing never shows the key again.
        let (_, list) = h
            .call(
                "GET",
                &format!("/api/v1/studios/{id}/sources"),
                Value::Null,
                Some(&alice),
            )
            .await;
        assert!(list[0].get("stream_key").is_none());

        let (status, grant) = h
            .call(
                "POST",
                "/internal/v1/ingest/authorize",
                json!({"stream_key": key}),
                Some(NODE_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(grant, json!({"studio": id, "source": source["id"]}));

        let (status, _) = h
            .call(
                "POST",
                "/internal/v1/ingest/authorize",
                json!({"stream_key": key}),
                Some(&alice),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "a user token is not a node token"
        );

        let source_id = source["id"].as_str().unwrap();
        let (status, rotated) = h
            .call(
                "POST",
                &format!("/api/v1/studios/{id}/sources/{source_id}/key"),
                Value::Null,
                Some(&alice),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_ne!(rotated["stream_key"], key);
        let (status, body) = h
            .call(
                "POST",
                "/internal/v1/ingest/authorize",
                json!({"stream_key": key}),
                Some(NODE_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(body["error"]["code"], "invalid_stream_key");
    }
}

#[tokio::test]
async fn scene_is_validated_and_stored() {
    for h in Harness::both().await {
        let alice = h.token("u_alice");
        let id = h.studio(&alice, "Show").await;
        let mut sources = Vec::new();
        for name in ["A", "B"] {
            let (_, s) = h
                .call(
                    "POST",
                    &format!("/api/v1/studios/{id}/sources"),
                    json!({"kind": "rtmp", "name": name}),
                    Some(&alice),
                )
                .await;
            sources.push(s["id"].as_str().unwrap().to_owned());
        }
        let scene = json!({
            "layout": "split",
            "on_stage": sources,
            "banner": {"text": "Live from the lab", "visible": true},
            "background": {"color": "#000000"},
            "brand_color": "#ff6600"
        });
        let (status, body) = h
            .call(
                "PUT",
                &format!("/api/v1/studios/{id}/scene"),
                scene.clone(),
                Some(&alice),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, stored) = h
            .call(
                "GET",
                &format!("/api/v1/studios/{id}/scene"),
                Value::Null,
                Some(&alice),
            )
            .await;
        assert_eq!(stored["layout"], "split");
        assert_eq!(stored["banner"]["text"], "Live from the lab");

        let (status, body) = h
            .call(
                "PUT",
                &format!("/api/v1/studios/{id}/scene"),
                json!({"layout": "split", "on_stage": ["src_nope"]}),
                Some(&alice),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "unknown_source");

        // Deleting a source takes it off the stage.
        let (status, _) = h
            .call(
                "DELETE",
                &format!("/api/v1/studios/{id}/sources/{}", sources[0]),
                Value::Null,
                Some(&alice),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (_, stored) = h
            .call(
                "GET",
                &format!("/api/v1/studios/{id}/scene"),
                Value::Null,
                Some(&alice),
            )
            .await;
        assert_eq!(stored["on_stage"], json!([sources[1]]));
    }
}

#[tokio::test]
async fn destinations_are_validated_and_keys_hidden() {
    for h in Harness::both().await {
        let alice = h.token("u_alice");
        let id = h.studio(&alice, "Show").await;
        let uri = format!("/api/v1/studios/{id}/destinations");
        let (status, dest) = h
            .call("POST", &uri, json!({"platform": "custom", "url": "rtmps://live.example.com:1936/live", "stream_key": "secret-key-1234", "name": "Local"}), Some(&alice))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{dest}");
        assert_eq!(dest["stream_key_hint"], "…1234");
        assert!(dest.get("stream_key").is_none());

        let (status, _) = h
            .call(
                "POST",
                &uri,
                json!({"platform": "youtube", "stream_key": "abcd-efgh"}),
                Some(&alice),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "presets need no url");

        for bad in [
            json!({"platform": "custom", "url": "http://127.0.0.1/live", "stream_key": "k"}),
            json!({"platform": "custom", "stream_key": "k"}),
            json!({"platform": "myspace", "url": "rtmp://a/b", "stream_key": "k"}),
            json!({"platform": "custom", "url": "rtmp://user:pw@a/b", "stream_key": "k"}),
            json!({"platform": "custom", "url": "rtmp://a/b", "stream_key": ""}),
            // What an origin would refuse is refused here too.
            json!({"platform": "custom", "url": "rtmp://a.example", "stream_key": "k"}),
            json!({"platform": "custom", "url": "rtmp://a.example/", "stream_key": "k"}),
            json!({"platform": "custom", "url": "rtmp://a.example/li ve", "stream_key": "k"}),
            json!({"platform": "custom", "url": "rtmp://bücher.example/live", "stream_key": "k"}),
            json!({"platform": "custom", "url": "rtmp://a.example:99999/live", "stream_key": "k"}),
            // Internal addresses, unless this control plane allows them.
            json!({"platform": "custom", "url": "rtmp://192.168.1.20/live", "stream_key": "k"}),
            json!({"platform": "custom", "url": "rtmp://169.254.169.254/live", "stream_key": "k"}),
            json!({"platform": "custom", "url": "rtmp://[::1]/live", "stream_key": "k"}),
            json!({"platform": "custom", "url": "rtmps://LOCALHOST./live", "stream_key": "k"}),
            json!({"platform": "custom", "url": "rtmp://127.1/live", "stream_key": "k"}),
            json!({"platform": "custom", "url": "rtmp://2130706433/live", "stream_key": "k"}),
            json!({"platform": "custom", "url": "rtmp://0x7f000001/live", "stream_key": "k"}),
            json!({"platform": "custom", "url": "rtmp://[::127.0.0.1]/live", "stream_key": "k"}),
            json!({"platform": "custom", "url": "rtmp://[64:ff9b::7f00:1]/live", "stream_key": "k"}),
        ] {
            let (status, body) = h.call("POST", &uri, bad.clone(), Some(&alice)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        }

        let (_, list) = h.call("GET", &uri, Value::Null, Some(&alice)).await;
        assert_eq!(list.as_array().unwrap().len(), 2);
        let dest_id = dest["id"].as_str().unwrap();
        let (status, _) = h
            .call(
                "DELETE",
                &format!("{uri}/{dest_id}"),
                Value::Null,
                Some(&alice),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, _) = h
            .call(
                "DELETE",
                &format!("{uri}/{dest_id}"),
                Value::Null,
                Some(&alice),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn going_live_needs_destinations_and_an_origin() {
    for h in Harness::both().await {
        let alice = h.token("u_alice");
        let id = h.studio(&alice, "Show").await;
        let uri = format!("/api/v1/studios/{id}/broadcast");
        let (status, body) = h.call("POST", &uri, Value::Null, Some(&alice)).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], "no_destinations");

        h.call(
            "POST",
            &format!("/api/v1/studios/{id}/destinations"),
            json!({"platform": "custom", "url": "rtmp://live.example.com/live", "stream_key": "k"}),
            Some(&alice),
        )
        .await;
        let (status, body) = h.call("POST", &uri, Value::Null, Some(&alice)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["error"]["code"], "no_origin");

        let (status, body) = h.call("GET", &uri, Value::Null, Some(&alice)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["state"], "offline");
        let (status, _) = h.call("DELETE", &uri, Value::Null, Some(&alice)).await;
        assert_eq!(status, StatusCode::CONFLICT);
    }
}

#[tokio::test]
async fn nodes_register_with_the_node_token() {
    for h in Harness::both().await {
        let edge = json!({"id": "edge-1", "role": "edge", "region": "local", "ingest_url": "rtmp://127.0.0.1:19350/live", "mesh_addr": "127.0.0.1:4443", "fingerprint": "sha256:00"});
        let (status, _) = h
            .call("PUT", "/internal/v1/nodes/edge-1", edge.clone(), None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, answer) = h
            .call(
                "PUT",
                "/internal/v1/nodes/edge-1",
                edge.clone(),
                Some(NODE_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer, json!({}), "edges are assigned nothing");
        // An origin hears which broadcasts it should be running.
        let origin = json!({"id": "origin-1", "role": "origin", "api_url": "http://127.0.0.1:9"});
        let (status, answer) = h
            .call(
                "PUT",
                "/internal/v1/nodes/origin-1",
                origin,
                Some(NODE_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(answer, json!({"broadcasts": []}));
        let (_, edges) = h
            .call(
                "GET",
                "/internal/v1/nodes?role=edge",
                Value::Null,
                Some(NODE_TOKEN),
            )
            .await;
        assert_eq!(edges[0]["mesh_addr"], "127.0.0.1:4443");

        // New sources are told to publish to the registered edge.
        let alice = h.token("u_alice");
        let id = h.studio(&alice, "Show").await;
        let (_, source) = h
            .call(
                "POST",
                &format!("/api/v1/studios/{id}/sources"),
                json!({"kind": "rtmp", "name": "cam"}),
                Some(&alice),
            )
            .await;
        assert_eq!(source["ingest_url"], "rtmp://127.0.0.1:19350/live");
    }
}

#[tokio::test]
async fn an_account_has_bounded_studios_sources_and_destinations() {
    for h in Harness::both().await {
        let alice = h.token("u_alice");
        let id = h.studio(&alice, "Show").await;
        let add = |uri: String, body: Value| {
            let h = &h;
            let alice = alice.clone();
            async move { h.call("POST", &uri, body, Some(&alice)).await }
        };
        for n in 0..10 {
            let (status, body) = add(
                format!("/api/v1/studios/{id}/destinations"),
                json!({"platform": "twitch", "stream_key": format!("key-{n}")}),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let (status, body) = add(
            format!("/api/v1/studios/{id}/destinations"),
            json!({"platform": "twitch", "stream_key": "one-too-many"}),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], "limit_reached");

        for n in 0..16 {
            let (status, _) = add(
                format!("/api/v1/studios/{id}/sources"),
                json!({"kind": "rtmp", "name": format!("cam {n}")}),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED);
        }
        let (status, body) = add(
            format!("/api/v1/studios/{id}/sources"),
            json!({"kind": "rtmp", "name": "cam 17"}),
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], "limit_reached");

        for n in 1..100 {
            h.studio(&alice, &format!("Show {n}")).await;
        }
        let (status, body) = add("/api/v1/studios".to_owned(), json!({"name": "one more"})).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], "limit_reached");
    }
}

#[tokio::test]
async fn malformed_paths_and_queries_get_json_errors() {
    for h in Harness::both().await {
        let alice = h.token("u_alice");
        for (uri, code) in [
            ("/api/v1/studios?q=a&q=b", "invalid_query"),
            ("/api/v1/studios/%ff", "invalid_path"),
            ("/api/v1/studios/%ff%fe/sources", "invalid_path"),
        ] {
            let (status, body) = h.call("GET", uri, Value::Null, Some(&alice)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
            assert_eq!(body["error"]["code"], code, "{uri}: {body}");
        }
    }
}

#[tokio::test]
async fn studio_changes_and_broadcasts_are_published_as_events() {
    for h in Harness::both().await {
        let queue = unique_name("test.studio-events.");
        let mut events = h.bus.subscribe(&queue, &["studio.*"]).await.unwrap();
        let token = h.token("u_events");
        let id = h.studio(&token, "Evening show").await;
        let (status, _) = h
            .call(
                "PATCH",
                &format!("/api/v1/studios/{id}"),
                json!({"description": "live from the roof"}),
                Some(&token),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = h
            .call(
                "DELETE",
                &format!("/api/v1/studios/{id}"),
                Value::Null,
                Some(&token),
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);

        for (kind, description) in [
            ("studio.created", ""),
            ("studio.updated", "live from the roof"),
            ("studio.deleted", "live from the roof"),
        ] {
            // Tests running alongside publish on the same broker: skip
            // their studios' events.
            let delivery = loop {
                let delivery =
                    tokio::time::timeout(std::time::Duration::from_secs(10), events.next())
                        .await
                        .expect("an event")
                        .expect("the bus is open");
                if delivery.event.data["studio_id"] == id.as_str() {
                    break delivery;
                }
                delivery.ack().await.unwrap();
            };
            assert_eq!(delivery.event.kind, kind);
            assert_eq!(delivery.event.data["studio_id"], id.as_str());
            assert_eq!(delivery.event.data["owner_id"], "u_events");
            assert_eq!(delivery.event.data["name"], "Evening show");
            assert_eq!(delivery.event.data["description"], description);
            delivery.ack().await.unwrap();
        }
        drop(events);
        testing::delete_amqp_queues(&[&queue]).await;
    }
}

#[tokio::test]
async fn studios_are_found_by_misspelt_words_once_their_events_are_indexed() {
    for h in Harness::both().await {
        let token = h.token("u_search");
        let other = h.token("u_other");
        let evening = h.studio(&token, "Evening Jazz Session").await;
        let morning = h.studio(&token, "Morning News").await;
        h.studio(&other, "Evening Jazz Session").await;

        // The index follows events: wait for it.
        let search = |q: &'static str| {
            let token = token.clone();
            let h = &h;
            async move {
                h.call(
                    "GET",
                    &format!("/api/v1/search/studios?{q}"),
                    Value::Null,
                    Some(&token),
                )
                .await
            }
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let found = loop {
            let (status, found) = search("q=evning%20jaz").await;
            assert_eq!(status, StatusCode::OK, "{found}");
            let (_, all) = search("").await;
            if found["total"] == 1 && all["total"] == 2 {
                break found;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "never indexed: {found}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(
            found["hits"][0]["studio_id"],
            evening.as_str(),
            "only the caller's own"
        );

        let (_, newest) = search("sort=newest&per_page=1").await;
        assert_eq!(newest["total"], 2);
        assert_eq!(newest["hits"][0]["studio_id"], morning.as_str());
        let (_, second) = search("sort=newest&per_page=1&page=2").await;
        assert_eq!(second["hits"][0]["studio_id"], evening.as_str());
        let (_, none_live) = search("live=true").await;
        assert_eq!(none_live["total"], 0);
        let (_, future) = search("created_after=2999-01-01T00:00:00Z").await;
        assert_eq!(future["total"], 0);

        let (status, body) = search("created_after=yesterday").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_time");
        let (status, _) = search("per_page=1000").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = h
            .call("GET", "/api/v1/search/studios?q=x", Value::Null, None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // A deleted studio leaves the index.
        h.call(
            "DELETE",
            &format!("/api/v1/studios/{morning}"),
            Value::Null,
            Some(&token),
        )
        .await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while search("q=morning").await.1["total"] != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "deleted studio still found"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn studios_carry_tags_that_events_carry_and_search_filters_on() {
    for h in Harness::both().await {
        let token = h.token("u_tags");
        let (status, created) = h
            .call(
                "POST",
                "/api/v1/studios",
                json!({"name": "Late Night Jazz", "tags": ["Jazz", " live-music ", "jazz"]}),
                Some(&token),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        assert_eq!(created["tags"], json!(["jazz", "live-music"]));
        let jazz = created["id"].as_str().unwrap().to_owned();
        let news = h.studio(&token, "Late Night News").await;
        assert_eq!(
            h.call(
                "GET",
                &format!("/api/v1/studios/{news}"),
                Value::Null,
                Some(&token)
            )
            .await
            .1["tags"],
            json!([])
        );

        for tags in [
            json!(["two words"]),
            json!([""]),
            json!(["x".repeat(33)]),
            json!((0..11).map(|i| format!("t{i}")).collect::<Vec<_>>()),
            json!("jazz"),
        ] {
            let (status, body) = h
                .call(
                    "PATCH",
                    &format!("/api/v1/studios/{news}"),
                    json!({ "tags": tags }),
                    Some(&token),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{tags}: {body}");
        }
        let (status, updated) = h
            .call(
                "PATCH",
                &format!("/api/v1/studios/{news}"),
                json!({"tags": ["news", "talk"]}),
                Some(&token),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        assert_eq!(updated["tags"], json!(["news", "talk"]));

        // The index learns tags from the events.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let (_, jazz_found) = h
                .call(
                    "GET",
                    "/api/v1/search/studios?tags=JAZZ",
                    Value::Null,
                    Some(&token),
                )
                .await;
            let (_, talk_found) = h
                .call(
                    "GET",
                    "/api/v1/search/studios?q=late%20night&tags=news,talk",
                    Value::Null,
                    Some(&token),
                )
                .await;
            if jazz_found["total"] == 1 && talk_found["total"] == 1 {
                assert_eq!(jazz_found["hits"][0]["studio_id"], jazz.as_str());
                assert_eq!(jazz_found["hits"][0]["tags"], json!(["jazz", "live-music"]));
                assert_eq!(talk_found["hits"][0]["studio_id"], news.as_str());
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "tags never indexed: {jazz_found} {talk_found}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}
