//! The control plane as separate processes: two instances of each service
//! on MariaDB and Redis behind the gateway, which finds the studio
//! service's instances by DNS SRV and the user service's from its list.

mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buildstream_backend::testing::{amqp_url, redis_url, unique_name, TestDatabase};
use serde_json::{json, Value};
use support::*;

const SERVICE_TOKEN: &str = "test-service-token-0123456789";
const STUDIO_SRV: &str = "_http._tcp.studio.buildstream.test.";

struct ControlPlane {
    gateway_url: String,
    user_ports: [u16; 2],
    studio_ports: [u16; 2],
    users: [Option<Proc>; 2],
    studios: [Option<Proc>; 2],
    _gateway: Proc,
    dns: dns::TestDns,
    env: Vec<(&'static str, String)>,
    _dbs: [TestDatabase; 2],
    _data: TempDir,
}

impl ControlPlane {
    async fn start() -> Self {
        let data = TempDir::new("control-plane");
        let user_db = TestDatabase::mysql().await;
        let studio_db = TestDatabase::mysql().await;
        let env = vec![
            ("BUILDSTREAM_DATA_DIR", data.path().display().to_string()),
            ("BUILDSTREAM_TOKEN_SECRET", TOKEN_SECRET.to_owned()),
            ("BUILDSTREAM_NODE_TOKEN", NODE_TOKEN.to_owned()),
            ("BUILDSTREAM_SERVICE_TOKEN", SERVICE_TOKEN.to_owned()),
            ("BUILDSTREAM_REDIS_URL", redis_url()),
            ("BUILDSTREAM_AMQP_URL", amqp_url()),
            (
                "BUILDSTREAM_REDIS_NAMESPACE",
                format!("{}:", unique_name("bstest")),
            ),
            ("BUILDSTREAM_USER_DATABASE_URL", user_db.url().unwrap()),
            ("BUILDSTREAM_STUDIO_DATABASE_URL", studio_db.url().unwrap()),
            ("BUILDSTREAM_LOG", "info".to_owned()),
            // Stopping services stay a little longer than the gateway's
            // health-check interval below.
            ("BUILDSTREAM_DRAIN_MS", "10000".to_owned()),
        ];
        let dns = dns::TestDns::start().await;
        let user_ports = [free_tcp_port(), free_tcp_port()];
        let studio_ports = [free_tcp_port(), free_tcp_port()];
        let gateway_port = free_tcp_port();
        let mut plane = Self {
            gateway_url: format!("http://127.0.0.1:{gateway_port}"),
            user_ports,
            studio_ports,
            users: [None, None],
            studios: [None, None],
            _gateway: Proc::spawn(
                "gateway",
                Command::new(buildstream_bin())
                    .arg("gateway")
                    .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                    .env(
                        "BUILDSTREAM_HTTP_LISTEN",
                        format!("127.0.0.1:{gateway_port}"),
                    )
                    .env(
                        "BUILDSTREAM_USER_INSTANCES",
                        user_ports
                            .map(|p| format!("http://127.0.0.1:{p}"))
                            .join(","),
                    )
                    .env("BUILDSTREAM_STUDIO_INSTANCES", "")
                    .env("BUILDSTREAM_STUDIO_SRV", STUDIO_SRV)
                    // Health checks far apart: between two, the breakers
                    // are what keeps requests off a vanished instance.
                    .env("BUILDSTREAM_CHECK_INTERVAL_MS", "8000")
                    // The load below is far above what one person makes.
                    .env("BUILDSTREAM_API_PER_MINUTE", "1000000")
                    .env("BUILDSTREAM_NAME_SERVER", dns.addr.to_string()),
            ),
            dns,
            env,
            _dbs: [user_db, studio_db],
            _data: data,
        };
        for i in 0..2 {
            plane.start_instance("user", i);
            plane.start_instance("studio", i);
        }
        plane
    }

    /// Started, with both studio instances in DNS and every instance
    /// healthy at the gateway.
    async fn start_ready() -> Self {
        let plane = Self::start().await;
        plane.dns.set(STUDIO_SRV, &plane.studio_ports);
        wait_http_ok(
            &format!("{}/readyz", plane.gateway_url),
            Duration::from_secs(90),
        )
        .await;
        for port in plane.studio_ports.into_iter().chain(plane.user_ports) {
            plane
                .wait_instance(port, "healthy", |i| i["healthy"] == true)
                .await;
        }
        plane
    }

    fn start_instance(&mut self, service: &str, i: usize) {
        let (port, slot, variable) = match service {
            "user" => (
                self.user_ports[i],
                &mut self.users[i],
                "BUILDSTREAM_USER_LISTEN",
            ),
            _ => (
                self.studio_ports[i],
                &mut self.studios[i],
                "BUILDSTREAM_STUDIO_LISTEN",
            ),
        };
        *slot = Some(Proc::spawn(
            &format!("{service} {i}"),
            Command::new(buildstream_bin())
                .args(["control", service])
                .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
                .env(variable, format!("127.0.0.1:{port}")),
        ));
    }

    /// Kills an instance: it vanishes with requests in flight.
    /// The instance's process, while it runs.
    fn instance_proc(&mut self, service: &str, i: usize) -> &mut Proc {
        let slot = match service {
            "user" => &mut self.users[i],
            _ => &mut self.studios[i],
        };
        slot.as_mut().expect("instance started")
    }

    fn kill_instance(&mut self, service: &str, i: usize) {
        let slot = match service {
            "user" => &mut self.users[i],
            _ => &mut self.studios[i],
        };
        if let Some(mut proc) = slot.take() {
            proc.kill();
        }
    }

    /// The gateway's view of one instance.
    async fn instance(&self, port: u16) -> Option<Value> {
        let instances: Value = reqwest::get(format!("{}/gateway/v1/instances", self.gateway_url))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let url = format!("http://127.0.0.1:{port}");
        instances
            .as_array()?
            .iter()
            .find(|i| i["url"] == url.as_str())
            .cloned()
    }

    async fn wait_instance(&self, port: u16, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            if let Some(instance) = self.instance(port).await {
                if check(&instance) {
                    return instance;
                }
            }
            assert!(
                Instant::now() < deadline,
                "instance on {port} never became {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Requests to both services, one after another, until stopped; any answer
/// that is not a success is kept. Every one is idempotent: a request cut
/// off inside an instance that crashed may have been applied, and only
/// those the gateway may send again (and does).
async fn steady_load(base: String, stop: Arc<Mutex<bool>>) -> (usize, Vec<String>) {
    let api = Api::sign_up(&base).await;
    let studio = api.create_studio("Load").await;
    let http = reqwest::Client::new();
    let mut sent = 0;
    let mut failures = Vec::new();
    while !*stop.lock().unwrap() {
        let requests = [
            http.get(format!("{base}/api/v1/studios")),
            http.get(format!("{base}/api/v1/users/me")),
            http.put(format!("{base}/api/v1/studios/{studio}/scene"))
                .json(&json!({"layout": if sent % 2 == 0 { "solo" } else { "grid" }})),
            http.get(format!("{base}/api/v1/search/studios?q=load")),
        ];
        for request in requests {
            sent += 1;
            match request.bearer_auth(&api.token).send().await {
                Ok(response) if response.status().is_success() => {}
                Ok(response) => failures.push(format!(
                    "{} {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                )),
                Err(err) => failures.push(err.to_string()),
            }
        }
    }
    (sent, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_keep_succeeding_while_instances_stop_and_return() {
    init();
    let mut plane = ControlPlane::start().await;
    // DNS names the first studio instance only, then both.
    plane.dns.set(STUDIO_SRV, &plane.studio_ports[..1]);
    wait_http_ok(
        &format!("{}/readyz", plane.gateway_url),
        Duration::from_secs(90),
    )
    .await;
    plane.dns.set(STUDIO_SRV, &plane.studio_ports);
    for port in plane.studio_ports.into_iter().chain(plane.user_ports) {
        plane
            .wait_instance(port, "healthy", |i| i["healthy"] == true)
            .await;
    }

    let stop = Arc::new(Mutex::new(false));
    let loads: Vec<_> = (0..3)
        .map(|_| tokio::spawn(steady_load(plane.gateway_url.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // One instance of each service dies.
    plane.kill_instance("studio", 0);
    plane.kill_instance("user", 0);
    let opened = plane
        .wait_instance(plane.studio_ports[0], "open", |i| i["breaker"] == "open")
        .await;
    eprintln!("studio instance 0 after it died: {opened}");
    plane
        .wait_instance(plane.user_ports[0], "unhealthy", |i| i["healthy"] == false)
        .await;

    // They return; their breakers close once a probe gets through.
    plane.start_instance("studio", 0);
    plane.start_instance("user", 0);
    for port in [plane.studio_ports[0], plane.user_ports[0]] {
        plane
            .wait_instance(port, "back", |i| {
                i["healthy"] == true && i["breaker"] == "closed"
            })
            .await;
    }

    // The others go: the returned instances carry everything.
    plane.kill_instance("studio", 1);
    plane.kill_instance("user", 1);
    tokio::time::sleep(Duration::from_secs(4)).await;

    *stop.lock().unwrap() = true;
    let (mut sent, mut failures) = (0, Vec::new());
    for load in loads {
        let (n, failed) = load.await.unwrap();
        sent += n;
        failures.extend(failed);
    }
    eprintln!("{sent} requests through the gateway while instances stopped and returned");
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(sent > 100, "only {sent} requests were sent");

    // A graceful stop loses nothing, not even requests that must not be
    // sent twice: the stopping instances say they are not ready, the
    // gateway stops sending to them, and only then do they close.
    plane.start_instance("studio", 1);
    plane.start_instance("user", 1);
    for port in [plane.studio_ports[1], plane.user_ports[1]] {
        plane
            .wait_instance(port, "healthy", |i| i["healthy"] == true)
            .await;
    }
    let stop = Arc::new(Mutex::new(false));
    let loads: Vec<_> = (0..3)
        .map(|_| tokio::spawn(changing_load(plane.gateway_url.clone(), stop.clone())))
        .collect();
    // The load's requests close the returned instances' breakers.
    for port in [plane.studio_ports[1], plane.user_ports[1]] {
        plane
            .wait_instance(port, "back", |i| i["breaker"] == "closed")
            .await;
    }
    let stopped_at = std::time::Instant::now();
    plane.instance_proc("studio", 0).terminate();
    plane.instance_proc("user", 0).terminate();
    for port in [plane.studio_ports[0], plane.user_ports[0]] {
        plane
            .wait_instance(port, "out of the pool", |i| i["healthy"] == false)
            .await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while plane.instance_proc("studio", 0).is_running()
        || plane.instance_proc("user", 0).is_running()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "stopping instances never exited"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "stopping instances drained and exited after {:?}",
        stopped_at.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    *stop.lock().unwrap() = true;
    let (mut sent, mut failures) = (0, Vec::new());
    for load in loads {
        let (n, failed) = load.await.unwrap();
        sent += n;
        failures.extend(failed);
    }
    eprintln!(
        "{sent} changing requests (POST, DELETE, refresh) while instances stopped gracefully"
    );
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(sent > 50, "only {sent} requests were sent");
}

/// Requests that change something and must not be repeated, until `stop`:
/// a studio created and deleted, a refresh token rotated (a refresh applied
/// but answered as failed would break the chain).
async fn changing_load(base: String, stop: Arc<Mutex<bool>>) -> (usize, Vec<String>) {
    let api = Api::sign_up(&base).await;
    let http = reqwest::Client::new();
    let mut refresh_token = api.refresh_token.clone();
    let mut sent = 0;
    let mut failures = Vec::new();
    while !*stop.lock().unwrap() {
        sent += 1;
        let created = http
            .post(format!("{base}/api/v1/studios"))
            .bearer_auth(&api.token)
            .json(&json!({"name": "Drained"}))
            .send()
            .await;
        match created {
            Ok(response) if response.status() == 201 => {
                let id = response.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                sent += 1;
                match http
                    .delete(format!("{base}/api/v1/studios/{id}"))
                    .bearer_auth(&api.token)
                    .send()
                    .await
                {
                    Ok(response) if response.status() == 204 => {}
                    Ok(response) => failures.push(format!("DELETE {}", response.status())),
                    Err(err) => failures.push(format!("DELETE {err}")),
                }
            }
            Ok(response) => failures.push(format!("POST {}", response.status())),
            Err(err) => failures.push(format!("POST {err}")),
        }
        sent += 1;
        let refreshed = http
            .post(format!("{base}/api/v1/sessions/refresh"))
            .json(&json!({ "refresh_token": refresh_token }))
            .send()
            .await;
        match refreshed {
            Ok(response) if response.status() == 200 => {
                let tokens: Value = response.json().await.unwrap();
                refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
            }
            Ok(response) => {
                failures.push(format!("refresh {}", response.status()));
                break;
            }
            Err(err) => {
                failures.push(format!("refresh {err}"));
                break;
            }
        }
    }
    (sent, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn search_follows_events_sign_in_is_limited_and_foreign_tokens_are_refused() {
    init();
    let plane = ControlPlane::start_ready().await;
    let base = plane.gateway_url.clone();
    let api = Api::sign_up(&base).await;

    // A caller's trace goes on through the gateway and the service into
    // the event the request causes, and the request id comes back.
    let bus = buildstream_backend::bus::open(Some(&amqp_url()))
        .await
        .unwrap();
    let queue = unique_name("test.traced.");
    let mut events = bus.subscribe(&queue, &["studio.created"]).await.unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = reqwest::Client::new()
        .post(format!("{base}/api/v1/studios"))
        .bearer_auth(&api.token)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .header("x-request-id", "test-request-1")
        .json(&json!({"name": "Traced"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-request-id"], "test-request-1");
    let delivery = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .expect("studio.created within 10 s")
        .unwrap();
    let traceparent = delivery
        .event
        .traceparent
        .clone()
        .expect("the event carries a trace");
    assert!(traceparent.contains(trace_id), "{traceparent}");
    delivery.ack().await.unwrap();
    drop(events);
    buildstream_backend::testing::delete_amqp_queues(&[&queue]).await;

    // Every service and the gateway count their requests for Prometheus.
    let metrics = get_text(&format!("{base}/metrics")).await;
    assert!(
        metrics.contains("http_requests_total{service=\"gateway\""),
        "{metrics}"
    );
    let metrics = get_text(&format!(
        "http://127.0.0.1:{}/metrics",
        plane.studio_ports[0]
    ))
    .await;
    assert!(
        metrics.contains("http_requests_total{service=\"studio\""),
        "{metrics}"
    );

    // The API reference: Swagger UI on the gateway, each service's document
    // fetched from its instances.
    let docs = reqwest::get(format!("{base}/docs/")).await.unwrap();
    assert_eq!(docs.status(), 200);
    let page = docs.text().await.unwrap();
    assert!(page.contains("swagger"), "{page}");
    let config = get_text(&format!("{base}/docs/swagger-initializer.js")).await;
    assert!(config.contains("/openapi/studio.json"), "{config}");
    for (service, path) in [
        ("user", "/api/v1/sessions/refresh"),
        ("studio", "/api/v1/search/studios"),
    ] {
        let response = reqwest::get(format!("{base}/openapi/{service}.json"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{service}");
        let document: Value = response.json().await.unwrap();
        assert!(
            document["paths"].get(path).is_some(),
            "{service}: {document}"
        );
    }
    let unknown = reqwest::get(format!("{base}/openapi/billing.json"))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // A studio created through the gateway is found by a misspelt word, on
    // whichever studio instance answers; how long that takes is the events'
    // end-to-end delay: publish, RabbitMQ, index.
    let mut delays = Vec::new();
    for i in 0..20 {
        let word = format!("zebra{i}crossing");
        let created = Instant::now();
        let id = api.create_studio(&format!("Studio {word}")).await;
        let misspelt = word.replacen("zebra", "zerba", 1);
        loop {
            let found = api
                .ok(
                    "GET",
                    &format!("/api/v1/search/studios?q={misspelt}&per_page=100"),
                    None,
                )
                .await;
            let hits = found["hits"].as_array().unwrap();
            if hits.iter().any(|hit| hit["studio_id"] == id.as_str()) {
                break;
            }
            assert!(
                created.elapsed() < Duration::from_secs(15),
                "{word} never found"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        delays.push(created.elapsed());
    }
    delays.sort();
    eprintln!(
        "created through the gateway to found by search: median {:?}, worst {:?} (20 studios)",
        delays[delays.len() / 2],
        delays[delays.len() - 1]
    );

    // Password guessing meets the sign-in limit.
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let response = http
            .post(format!("{base}/api/v1/sessions"))
            .json(&json!({"email": "nobody@example.com", "password": "guess guess guess"}))
            .send()
            .await
            .unwrap();
        let retry_after = response.headers().get("retry-after").cloned();
        statuses.push((response.status().as_u16(), retry_after));
    }
    // Ten sign-ins a minute from one address, the test's own sign-up
    // included: wrong passwords until then, refusals after.
    let first_refused = statuses
        .iter()
        .position(|(status, _)| *status == 429)
        .unwrap_or_else(|| panic!("never limited: {statuses:?}"));
    assert_eq!(first_refused, 9, "{statuses:?}");
    assert!(statuses[..9].iter().all(|(s, _)| *s == 401), "{statuses:?}");
    for (status, retry_after) in &statuses[9..] {
        assert_eq!(*status, 429);
        assert!(retry_after.is_some(), "429 says when to come back");
    }

    // Tokens the deployment did not sign, or signed another way, are
    // refused at the gateway.
    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
    let claims = json!({"sub": "u_forged", "iat": 1, "exp": 4_000_000_000u64, "typ": "access"});
    let other_algorithm = encode(
        &Header::new(Algorithm::HS384),
        &claims,
        &EncodingKey::from_secret(TOKEN_SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    let other_key = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(b"another secret of thirty-two bytes!!").unwrap(),
    )
    .unwrap();
    let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJ1X2ZvcmdlZCIsImlhdCI6MSwiZXhwIjo0MDAwMDAwMDAwLCJ0eXAiOiJhY2Nlc3MifQ.";
    for token in [other_algorithm.as_str(), other_key.as_str(), unsigned] {
        let response = http
            .get(format!("{base}/api/v1/users/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    // Nor can a client claim to be someone through the gateway's headers.
    let response = http
        .get(format!("{base}/api/v1/users/me"))
        .header("x-buildstream-user", "u_forged")
        .header("x-buildstream-gateway", SERVICE_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

/// Requests per second and latency through the gateway against straight
/// to a service, in one run. A measurement, not a check: run it with
/// `cargo test --release --test control_plane gateway_overhead -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement; run by hand"]
async fn gateway_overhead() {
    init();
    let plane = ControlPlane::start_ready().await;
    let api = Api::sign_up(&plane.gateway_url).await;
    let direct = format!("http://127.0.0.1:{}", plane.user_ports[0]);
    for (label, base) in [
        ("through the gateway", plane.gateway_url.clone()),
        ("straight to a user instance", direct),
    ] {
        let (rps, p50, p99) = measure(&base, &api.token, 16, Duration::from_secs(10)).await;
        eprintln!("GET /api/v1/users/me {label}: {rps:.0} requests/s, p50 {p50:?}, p99 {p99:?}");
    }
}

async fn measure(
    base: &str,
    token: &str,
    clients: usize,
    length: Duration,
) -> (f64, Duration, Duration) {
    let deadline = Instant::now() + length;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (base, token) = (base.to_owned(), token.to_owned());
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let response = http
                    .get(format!("{base}/api/v1/users/me"))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success());
                let _ = response.bytes().await;
                latencies.push(started.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    latencies.sort();
    let rps = latencies.len() as f64 / length.as_secs_f64();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    (rps, at(0.5), at(0.99))
}
