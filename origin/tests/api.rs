//! The internal HTTP API, over real HTTP, driving a real broadcast to
//! nginx-rtmp.

mod support;

use std::time::Duration;

use buildstream_mesh::Tracks;
use buildstream_origin::broadcast::router;
use buildstream_origin::OriginConfig;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::nginx::Nginx;

struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        (status, json)
    }

    async fn raw_put(&self, path: &str, body: &str) -> (StatusCode, Value) {
        let response = self
            .client
            .put(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("request");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_plane_drives_a_broadcast_over_http() {
    let _serial = support::serial().await;
    let nginx = Nginx::start().await;
    let broadcasts = support::origin(&Tracks::new(), OriginConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, router(broadcasts)).await });
    // reqwest is built without a default TLS provider; this test speaks
    // plain HTTP but the client still wants one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api = Api {
        base,
        client: reqwest::Client::new(),
    };
    use reqwest::Method;
    let path = "/internal/v1/broadcasts/api-studio";

    // Errors are JSON with a code.
    let (status, body) = api.call(Method::GET, path, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_live")
    );
    let (status, body) = api
        .call(Method::GET, "/internal/v1/broadcasts/bad.id", None)
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_studio")
    );
    let (status, body) = api.raw_put(path, "{not json").await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_body")
    );
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    let (status, body) = api
        .call(
            Method::PUT,
            path,
            Some(json!({"output": {"width": 1000, "height": 700}})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_body")
    );

    // Start.
    let spec = json!({
        "output": {"width": 640, "height": 360, "framerate": 30},
        "scene": {"layout": "grid", "banner": {"text": "hello", "visible": true}},
        "destinations": [
            {"id": "main", "name": "Local", "url": nginx.url(), "stream_key": "api-secret-key"}
        ],
    });
    let (status, body) = api.call(Method::PUT, path, Some(spec.clone())).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["state"], "live");
    assert!(body["started_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(body["destinations"][0]["id"], "main");
    assert!(
        !body.to_string().contains("api-secret-key"),
        "stream keys never come back"
    );
    // PUT again is idempotent: the same destination keeps its connection.
    for _ in 0..100 {
        let (_, body) = api.call(Method::GET, path, None).await;
        if body["destinations"][0]["state"] == "live" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = api.call(Method::PUT, path, Some(spec.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["destinations"][0]["state"], "live", "{body}");
    assert_eq!(body["destinations"][0]["connections"], 1, "{body}");

    // Scene changes.
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("{path}/scene"),
            Some(json!({"layout": "pip", "brand_color": "#ff0000"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api
        .call(
            Method::PUT,
            &format!("{path}/scene"),
            Some(json!({"brand_color": "red"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_body")
    );

    // Destinations.
    let extra = format!("{path}/destinations/extra");
    let (status, body) = api
        .call(
            Method::PUT,
            &extra,
            Some(json!({"platform": "custom", "stream_key": "k"})),
        )
        .await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_destination")
    );
    let (status, body) = api
        .call(
            Method::PUT,
            &extra,
            Some(json!({"name": "Extra", "url": nginx.url(), "stream_key": "extra"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["destinations"].as_array().map(Vec::len), Some(2));

    let mut last = Value::Null;
    for _ in 0..150 {
        let (_, body) = api.call(Method::GET, path, None).await;
        let live = body["destinations"]
            .as_array()
            .is_some_and(|ds| ds.iter().all(|d| d["state"] == "live"));
        last = body;
        if live {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let destinations = last["destinations"].as_array().expect("destinations");
    assert!(destinations.iter().all(|d| d["state"] == "live"), "{last}");
    for d in destinations {
        for field in ["id", "name", "state", "since", "last_error", "bytes_sent"] {
            assert!(d.get(field).is_some(), "{field} missing in {d}");
        }
    }

    let (status, _) = api.call(Method::DELETE, &extra, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // A new output profile restarts the broadcast with it.
    let mut bigger = spec;
    bigger["output"] = json!({"width": 854, "height": 480, "framerate": 30});
    let (status, body) = api.call(Method::PUT, path, Some(bigger)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["output"]["width"], 854, "{body}");
    assert_eq!(
        body["destinations"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );
    let (status, body) = api.call(Method::DELETE, &extra, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "no_such_destination")
    );

    assert!(
        nginx
            .wait_for_recording("api-secret-key", 1_000, Duration::from_secs(10))
            .await,
        "the stream reached nginx"
    );

    // Stop.
    let (status, _) = api.call(Method::DELETE, path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api.call(Method::GET, path, None).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_live")
    );

    server.abort();
}
