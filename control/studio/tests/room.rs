//! The studio room over HTTP: invites, guests waiting and admitted, stage
//! state, removal, and what edges are told about media.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use buildstream_backend::testing::{self, TestDatabase};
use buildstream_backend::SharedCache;
use buildstream_service::{NodeToken, TokenKeys};
use buildstream_studio::{StudioService, StudioSettings};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

const NODE_TOKEN: &str = "node-token-for-room-tests";

/// The service on SQLite with the in-memory cache, then on MySQL with
/// Redis; the databases live as long as the list.
async fn backends() -> Vec<(Router, TokenKeys, TestDatabase)> {
    let mut backends = Vec::new();
    for (db, redis) in [
        (TestDatabase::sqlite().await, false),
        (TestDatabase::mysql().await, true),
    ] {
        eprintln!("-- {}", db.label);
        let (app, keys) = app(&db, testing::cache(redis).await).await;
        backends.push((app, keys, db));
    }
    backends
}

async fn app(db: &TestDatabase, cache: SharedCache) -> (Router, TokenKeys) {
    let keys = TokenKeys::from_secret(&[7u8; 32]).unwrap();
    let service = StudioService::new(
        db.db.clone(),
        cache,
        testing::events(),
        std::sync::Arc::new(buildstream_backend::search::TantivyIndex::in_memory().unwrap()),
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
    (service.router(), keys)
}

async fn call(
    app: &Router,
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
    let response = app
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

async fn studio(app: &Router, host: &str) -> String {
    let (status, body) = call(
        app,
        "POST",
        "/api/v1/studios",
        json!({"name": "Room"}),
        Some(host),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn authorize(
    app: &Router,
    studio: &str,
    token: &str,
    source: &str,
    action: &str,
) -> StatusCode {
    call(
        app,
        "POST",
        "/internal/v1/room/authorize",
        json!({"studio": studio, "token": token, "source": source, "action": action}),
        Some(NODE_TOKEN),
    )
    .await
    .0
}

#[tokio::test]
async fn a_guest_with_an_invite_waits_until_admitted_then_goes_on_stage() {
    for (app, keys, _db) in backends().await {
        let host = keys.issue("u_host").unwrap();
        let id = studio(&app, &host).await;

        let (status, joined) = call(
            &app,
            "POST",
            &format!("/api/v1/studios/{id}/room/join"),
            json!({"name": "Hana"}),
            Some(&host),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{joined}");
        assert_eq!(joined["room"]["you"]["state"], "backstage");
        assert_eq!(joined["edge_url"], "http://127.0.0.1:8082");
        let host_media = joined["media_token"].as_str().unwrap().to_owned();
        let host_camera = joined["room"]["you"]["camera_source"]
            .as_str()
            .unwrap()
            .to_owned();

        let (status, invite) = call(
            &app,
            "POST",
            &format!("/api/v1/studios/{id}/invites"),
            Value::Null,
            Some(&host),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{invite}");
        let invite_token = invite["invite_token"].as_str().unwrap();
        assert!(invite["invite_path"]
            .as_str()
            .unwrap()
            .starts_with(&format!("/join/{id}#invite=")));

        // The invite is not a pass into the room by itself.
        let (status, _) = call(
            &app,
            "POST",
            &format!("/api/v1/studios/{id}/room/join"),
            Value::Null,
            Some(invite_token),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let (status, pass) = call(
            &app,
            "POST",
            &format!("/api/v1/studios/{id}/room/guests"),
            json!({"invite": invite_token, "name": "Gus"}),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{pass}");
        let guest = pass["guest_token"].as_str().unwrap().to_owned();
        let (status, joined) = call(
            &app,
            "POST",
            &format!("/api/v1/studios/{id}/room/join"),
            Value::Null,
            Some(&guest),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{joined}");
        assert_eq!(joined["room"]["you"]["state"], "waiting");
        assert_eq!(joined["room"]["you"]["name"], "Gus");
        let guest_camera = joined["room"]["you"]["camera_source"]
            .as_str()
            .unwrap()
            .to_owned();
        let guest_id = joined["room"]["you"]["id"].as_str().unwrap().to_owned();
        assert_eq!(joined["media_token"], guest.as_str());

        // Waiting guests are no sources of the studio yet.
        let (_, sources) = call(
            &app,
            "GET",
            &format!("/api/v1/studios/{id}/sources"),
            Value::Null,
            Some(&host),
        )
        .await;
        assert_eq!(
            sources.as_array().unwrap().len(),
            1,
            "only the host's camera: {sources}"
        );
        // Neither an invite nor a guest pass is a viewer token.
        for token in [invite_token, guest.as_str()] {
            let (status, _) = call(
                &app,
                "POST",
                "/internal/v1/playback/authorize",
                json!({"studio": id, "token": token}),
                Some(NODE_TOKEN),
            )
            .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }

        // Waiting: nothing to send or receive at the edge.
        assert_eq!(
            authorize(&app, &id, &guest, &guest_camera, "publish").await,
            StatusCode::FORBIDDEN
        );
        // A guest cannot admit themself.
        let admit = format!("/api/v1/studios/{id}/room/participants/{guest_id}/admit");
        assert_eq!(
            call(&app, "POST", &admit, Value::Null, Some(&guest))
                .await
                .0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(&app, "POST", &admit, Value::Null, Some(&host)).await.0,
            StatusCode::NO_CONTENT
        );

        assert_eq!(
            authorize(&app, &id, &guest, &guest_camera, "publish").await,
            StatusCode::OK
        );
        assert_eq!(
            authorize(&app, &id, &guest, &host_camera, "publish").await,
            StatusCode::FORBIDDEN,
            "not theirs"
        );
        assert_eq!(
            authorize(&app, &id, &guest, &host_camera, "play").await,
            StatusCode::OK
        );
        assert_eq!(
            authorize(&app, &id, &host_media, &guest_camera, "play").await,
            StatusCode::OK
        );
        assert_eq!(
            authorize(&app, &id, &host_media, "src_nope", "play").await,
            StatusCode::NOT_FOUND
        );

        // On stage through the scene, which takes participants' cameras.
        let (status, body) = call(
            &app,
            "PUT",
            &format!("/api/v1/studios/{id}/scene"),
            json!({"layout": "split", "on_stage": [host_camera, guest_camera]}),
            Some(&host),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (_, room) = call(
            &app,
            "GET",
            &format!("/api/v1/studios/{id}/room"),
            Value::Null,
            Some(&guest),
        )
        .await;
        assert_eq!(room["you"]["state"], "stage");
        assert_eq!(room["participants"].as_array().unwrap().len(), 2);
        assert_eq!(room["participants"][0]["role"], "host", "{room}");

        // Rejoining (a reload) keeps the same camera, so the same slot.
        let (_, again) = call(
            &app,
            "POST",
            &format!("/api/v1/studios/{id}/room/join"),
            Value::Null,
            Some(&guest),
        )
        .await;
        assert_eq!(again["room"]["you"]["camera_source"], guest_camera.as_str());
        assert_eq!(again["room"]["you"]["state"], "stage");

        // Screen sharing makes a second source of the guest's.
        let (status, screen) = call(
            &app,
            "POST",
            &format!("/api/v1/studios/{id}/room/screen"),
            Value::Null,
            Some(&guest),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{screen}");
        let screen = screen["screen_source"].as_str().unwrap().to_owned();
        assert_eq!(
            authorize(&app, &id, &guest, &screen, "publish").await,
            StatusCode::OK
        );

        // On stage, then the share stops: the screen leaves the stage.
        let mut scene = call(
            &app,
            "GET",
            &format!("/api/v1/studios/{id}/scene"),
            Value::Null,
            Some(&host),
        )
        .await
        .1;
        scene["on_stage"] = json!([screen, host_camera, guest_camera]);
        scene["layout"] = json!("screen");
        assert_eq!(
            call(
                &app,
                "PUT",
                &format!("/api/v1/studios/{id}/scene"),
                scene,
                Some(&host)
            )
            .await
            .0,
            StatusCode::OK
        );
        assert_eq!(
            call(
                &app,
                "DELETE",
                &format!("/api/v1/studios/{id}/room/screen"),
                Value::Null,
                Some(&guest)
            )
            .await
            .0,
            StatusCode::NO_CONTENT
        );
        let (_, scene) = call(
            &app,
            "GET",
            &format!("/api/v1/studios/{id}/scene"),
            Value::Null,
            Some(&host),
        )
        .await;
        assert_eq!(scene["on_stage"], json!([host_camera, guest_camera]));

        // Removed: off stage, and the token no longer opens anything.
        let remove = format!("/api/v1/studios/{id}/room/participants/{guest_id}");
        assert_eq!(
            call(&app, "DELETE", &remove, Value::Null, Some(&guest))
                .await
                .0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            call(&app, "DELETE", &remove, Value::Null, Some(&host))
                .await
                .0,
            StatusCode::NO_CONTENT
        );
        let (_, scene) = call(
            &app,
            "GET",
            &format!("/api/v1/studios/{id}/scene"),
            Value::Null,
            Some(&host),
        )
        .await;
        assert_eq!(scene["on_stage"], json!([host_camera]));
        assert_eq!(
            call(
                &app,
                "GET",
                &format!("/api/v1/studios/{id}/room"),
                Value::Null,
                Some(&guest)
            )
            .await
            .0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            authorize(&app, &id, &guest, &guest_camera, "publish").await,
            StatusCode::FORBIDDEN
        );
    }
}

#[tokio::test]
async fn tokens_open_only_their_own_studio() {
    for (app, keys, _db) in backends().await {
        let host = keys.issue("u_a").unwrap();
        let other_host = keys.issue("u_b").unwrap();
        let mine = studio(&app, &host).await;
        let theirs = studio(&app, &other_host).await;

        // Another user's access token: no such studio for them.
        let (status, _) = call(
            &app,
            "POST",
            &format!("/api/v1/studios/{mine}/room/join"),
            Value::Null,
            Some(&other_host),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // An invite for one studio does not open another.
        let (_, invite) = call(
            &app,
            "POST",
            &format!("/api/v1/studios/{theirs}/invites"),
            json!({"hours": 1}),
            Some(&other_host),
        )
        .await;
        let (status, _) = call(
            &app,
            "POST",
            &format!("/api/v1/studios/{mine}/room/guests"),
            json!({"invite": invite["invite_token"], "name": "Eve"}),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // Invites last at most a week.
        let (status, _) = call(
            &app,
            "POST",
            &format!("/api/v1/studios/{mine}/invites"),
            json!({"hours": 1000}),
            Some(&host),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        // No token, a garbage token.
        assert_eq!(
            call(
                &app,
                "GET",
                &format!("/api/v1/studios/{mine}/room"),
                Value::Null,
                None
            )
            .await
            .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(
                &app,
                "GET",
                &format!("/api/v1/studios/{mine}/room"),
                Value::Null,
                Some("x.y.z")
            )
            .await
            .0,
            StatusCode::UNAUTHORIZED
        );
        // The internal check wants the node token.
        let (status, _) = call(
            &app,
            "POST",
            "/internal/v1/room/authorize",
            json!({"studio": mine, "token": host, "source": "x", "action": "play"}),
            Some(&host),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn two_instances_on_one_database_and_redis_share_rooms_and_nodes() {
    let db = TestDatabase::mysql().await;
    let redis_namespace = testing::unique_name("bstest-shared");
    let shared = || async {
        buildstream_backend::cache::open(Some(&testing::redis_url()), &redis_namespace)
            .await
            .unwrap()
    };
    let (a, keys) = app(&db, shared().await).await;
    let (b, _) = app(&db, shared().await).await;
    let host = keys.issue("u_host").unwrap();
    let id = studio(&a, &host).await;

    // The host joins on one instance, the guest on the other.
    let (status, _) = call(
        &a,
        "POST",
        &format!("/api/v1/studios/{id}/room/join"),
        Value::Null,
        Some(&host),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, invite) = call(
        &a,
        "POST",
        &format!("/api/v1/studios/{id}/invites"),
        Value::Null,
        Some(&host),
    )
    .await;
    let (status, pass) = call(
        &b,
        "POST",
        &format!("/api/v1/studios/{id}/room/guests"),
        json!({"invite": invite["invite_token"], "name": "Gus"}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let guest = pass["guest_token"].as_str().unwrap().to_owned();
    let participant = pass["participant"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &b,
        "POST",
        &format!("/api/v1/studios/{id}/room/join"),
        Value::Null,
        Some(&guest),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // The host, on the first instance, sees the guest waiting and admits them.
    let (_, room) = call(
        &a,
        "GET",
        &format!("/api/v1/studios/{id}/room"),
        Value::Null,
        Some(&host),
    )
    .await;
    let waiting = room["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == participant.as_str())
        .unwrap();
    assert_eq!(waiting["state"], "waiting");
    let (status, _) = call(
        &a,
        "POST",
        &format!("/api/v1/studios/{id}/room/participants/{participant}/admit"),
        Value::Null,
        Some(&host),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // The guest, on the second, is admitted.
    let (_, room) = call(
        &b,
        "GET",
        &format!("/api/v1/studios/{id}/room"),
        Value::Null,
        Some(&guest),
    )
    .await;
    assert_eq!(room["you"]["state"], "backstage", "{room}");

    // A node heartbeating to one instance is known to the other.
    let node =
        json!({"id": "edge-x", "role": "edge", "region": "eu", "api_url": "http://127.0.0.1:9999"});
    let (status, _) = call(
        &a,
        "PUT",
        "/internal/v1/nodes/edge-x",
        node,
        Some(NODE_TOKEN),
    )
    .await;
    assert!(status.is_success(), "{status}");
    let (_, nodes) = call(
        &b,
        "GET",
        "/internal/v1/nodes?role=edge",
        Value::Null,
        Some(NODE_TOKEN),
    )
    .await;
    assert_eq!(nodes[0]["id"], "edge-x", "{nodes}");

    // A guest removed on one instance is refused on the other.
    let (status, _) = call(
        &a,
        "DELETE",
        &format!("/api/v1/studios/{id}/room/participants/{participant}"),
        Value::Null,
        Some(&host),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(
        &b,
        "GET",
        &format!("/api/v1/studios/{id}/room"),
        Value::Null,
        Some(&guest),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "removed");
}
