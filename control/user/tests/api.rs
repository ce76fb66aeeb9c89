//! The user service's HTTP API, called through its router.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use buildstream_backend::testing::{self, TestDatabase};
use buildstream_service::TokenKeys;
use buildstream_user::UserService;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// Runs `test` against the service on SQLite with the in-memory cache,
/// then on MySQL with Redis.
async fn each_backend<F, Fut>(test: F)
where
    F: Fn(Router) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for (db, redis) in [
        (TestDatabase::sqlite().await, false),
        (TestDatabase::mysql().await, true),
    ] {
        eprintln!("-- {}", db.label);
        test(app(&db, redis).await).await;
    }
}

async fn app(db: &TestDatabase, redis: bool) -> Router {
    let keys = TokenKeys::from_secret(&[7u8; 32]).unwrap();
    UserService::new(
        db.db.clone(),
        testing::cache(redis).await,
        testing::events(),
        keys,
    )
    .await
    .unwrap()
    .router()
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
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

async fn register_and_sign_in(app: &Router) -> Value {
    let (status, _) = call(
        app,
        "POST",
        "/api/v1/users",
        json!({"email": "Host@example.com", "password": "hunter2hunter2", "display_name": "Host"}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, tokens) = call(
        app,
        "POST",
        "/api/v1/sessions",
        json!({"email": "host@example.com", "password": "hunter2hunter2"}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    tokens
}

#[tokio::test]
async fn register_sign_in_and_read_profile() {
    each_backend(|app| async move {
        let tokens = register_and_sign_in(&app).await;
        let access = tokens["access_token"].as_str().unwrap();
        let (status, me) = call(&app, "GET", "/api/v1/users/me", Value::Null, Some(access)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(me["display_name"], "Host");
        assert!(me.get("password_hash").is_none());
    })
    .await;
}

#[tokio::test]
async fn duplicate_email_and_bad_input_are_refused() {
    each_backend(|app| async move {
        register_and_sign_in(&app).await;
        let (status, body) = call(
            &app,
            "POST",
            "/api/v1/users",
            json!({"email": "HOST@example.com", "password": "another password", "display_name": "X"}),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body["error"]["code"], "email_taken");

        let (status, body) = call(
            &app,
            "POST",
            "/api/v1/users",
            json!({"email": "nobody", "password": "long enough", "display_name": "X"}),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_email");

        let (status, body) = call(
            &app,
            "POST",
            "/api/v1/users",
            json!({"email": "esc@example.com", "password": "long enough", "display_name": "X\u{1b}[2J"}),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"]["code"], "invalid_display_name");

        let request = Request::builder()
            .method("POST")
            .uri("/api/v1/users")
            .header("content-type", "application/json")
            .body(Body::from("{\"email\": "))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    })
    .await;
}

#[tokio::test]
async fn wrong_password_and_unknown_email_look_the_same() {
    each_backend(|app| async move {
        register_and_sign_in(&app).await;
        let (s1, b1) = call(
            &app,
            "POST",
            "/api/v1/sessions",
            json!({"email": "host@example.com", "password": "wrong password"}),
            None,
        )
        .await;
        let (s2, b2) = call(
            &app,
            "POST",
            "/api/v1/sessions",
            json!({"email": "ghost@example.com", "password": "wrong password"}),
            None,
        )
        .await;
        assert_eq!(s1, StatusCode::UNAUTHORIZED);
        assert_eq!((s1, b1), (s2, b2));
    })
    .await;
}

#[tokio::test]
async fn refresh_rotates_and_replay_revokes_family() {
    each_backend(|app| async move {
        let tokens = register_and_sign_in(&app).await;
        let first = tokens["refresh_token"].as_str().unwrap().to_owned();
        let (status, next) = call(
            &app,
            "POST",
            "/api/v1/sessions/refresh",
            json!({"refresh_token": first}),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let second = next["refresh_token"].as_str().unwrap().to_owned();
        assert_ne!(first, second);

        // Replaying the first token revokes the family, so the second dies too.
        let (status, _) = call(
            &app,
            "POST",
            "/api/v1/sessions/refresh",
            json!({"refresh_token": first}),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = call(
            &app,
            "POST",
            "/api/v1/sessions/refresh",
            json!({"refresh_token": second}),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    })
    .await;
}

#[tokio::test]
async fn profile_needs_a_valid_token() {
    each_backend(|app| async move {
        let (status, body) = call(&app, "GET", "/api/v1/users/me", Value::Null, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "unauthorized");
        let (status, _) = call(
            &app,
            "GET",
            "/api/v1/users/me",
            Value::Null,
            Some("not.a.jwt"),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_refreshes_all_succeed_and_a_race_has_one_winner() {
    // A file database, so that SQLite runs with several connections as it
    // does in service.
    let dir = std::env::temp_dir().join(testing::unique_name("user-refresh-"));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = buildstream_backend::Database::open_sqlite(&dir.join("users.db"))
        .await
        .unwrap();
    let keys = TokenKeys::from_secret(&[7u8; 32]).unwrap();
    let sqlite_app = UserService::new(sqlite, testing::cache(false).await, testing::events(), keys)
        .await
        .unwrap()
        .router();
    let mysql = TestDatabase::mysql().await;
    for app in [sqlite_app, app(&mysql, true).await] {
        parallel_refreshes(app).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

async fn parallel_refreshes(app: Router) {
    register_and_sign_in(&app).await;
    let mut sessions = Vec::new();
    for _ in 0..12 {
        let (status, tokens) = call(
            &app,
            "POST",
            "/api/v1/sessions",
            json!({"email": "host@example.com", "password": "hunter2hunter2"}),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        sessions.push(tokens["refresh_token"].as_str().unwrap().to_owned());
    }

    // Twelve devices refresh at once: every one gets through.
    let refreshes = sessions.iter().map(|token| {
        let app = app.clone();
        let body = json!({"refresh_token": token});
        tokio::spawn(
            async move { call(&app, "POST", "/api/v1/sessions/refresh", body, None).await },
        )
    });
    for refreshed in futures::future::join_all(refreshes).await {
        let (status, body) = refreshed.unwrap();
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    // One token raced from two places: one wins, the other is a replay.
    let (status, tokens) = call(
        &app,
        "POST",
        "/api/v1/sessions",
        json!({"email": "host@example.com", "password": "hunter2hunter2"}),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let token = tokens["refresh_token"].as_str().unwrap().to_owned();
    let race = (0..2).map(|_| {
        let app = app.clone();
        let body = json!({"refresh_token": token});
        tokio::spawn(
            async move { call(&app, "POST", "/api/v1/sessions/refresh", body, None).await },
        )
    });
    let statuses: Vec<StatusCode> = futures::future::join_all(race)
        .await
        .into_iter()
        .map(|r| r.unwrap().0)
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        1,
        "{statuses:?}"
    );
}
