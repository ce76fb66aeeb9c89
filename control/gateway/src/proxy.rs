//! Forwarding one request to an instance of a service: the choice of
//! instance, a deadline per attempt, and bounded retries where a retry
//! cannot do a request twice.
//!
//! A request may be retried (on another instance) when it never reached a
//! service (the connection was refused or failed), whatever its method; and
//! for idempotent methods also when the instance timed out or answered
//! 502 or 504. Each attempt's outcome feeds the instance's breaker.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header::{self, HeaderMap, HeaderName};
use axum::http::{request, Method, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use buildstream_service::ApiError;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::breaker::BreakerState;
use crate::upstream::{Instance, Pool};

/// The HTTP/1.1 client every upstream request goes through, keeping
/// connections to instances open between requests.
pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// A client with short connect timeouts: an instance that does not accept
/// a connection within a second is treated as down.
pub fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(64)
        .build(connector)
}

/// Deadlines and retries of forwarded requests.
#[derive(Debug, Clone, Copy)]
pub struct ProxyPolicy {
    /// How long one attempt may wait for the response head.
    pub attempt_timeout: Duration,
    /// Attempts after the first, each on an instance not tried yet.
    pub retries: u32,
    /// Pause before a retry, doubled for each further one.
    pub backoff: Duration,
}

impl Default for ProxyPolicy {
    fn default() -> Self {
        Self {
            attempt_timeout: Duration::from_secs(15),
            retries: 2,
            backoff: Duration::from_millis(20),
        }
    }
}

/// Whether `GET /readyz`-style `url` answers 2xx within `timeout`.
pub async fn probe(client: &HttpClient, url: &str, timeout: Duration) -> bool {
    let Ok(uri) = url.parse::<Uri>() else {
        return false;
    };
    let request = hyper::Request::get(uri).body(Full::new(Bytes::new()));
    let Ok(request) = request else {
        return false;
    };
    matches!(
        tokio::time::timeout(timeout, client.request(request)).await,
        Ok(Ok(response)) if response.status().is_success()
    )
}

/// Forwards a request to the service behind `pool`, and its answer back.
pub async fn forward(
    pool: &Pool,
    client: &HttpClient,
    policy: ProxyPolicy,
    parts: &request::Parts,
    body: Bytes,
    client_ip: IpAddr,
) -> Response<Body> {
    let idempotent = matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE
    );
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut tried: Vec<Arc<Instance>> = Vec::new();
    let mut last_failure = None;
    for attempt in 0..=policy.retries {
        if attempt > 0 {
            tokio::time::sleep(policy.backoff * 2u32.pow(attempt - 1)).await;
        }
        let Some(lease) = pool.pick(&tried) else {
            break;
        };
        let instance = lease.instance().clone();
        tried.push(instance.clone());
        let request = match upstream_request(parts, &instance.url, path, body.clone(), client_ip) {
            Ok(request) => request,
            Err(err) => return err.into_response(),
        };
        let outcome = tokio::time::timeout(policy.attempt_timeout, client.request(request)).await;
        let (failure, retry) = match outcome {
            Ok(Ok(response)) => {
                let status = response.status();
                let failed = matches!(
                    status,
                    StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
                );
                report(pool, &instance, lease.finish(!failed));
                if !failed || !idempotent {
                    return downstream_response(response);
                }
                (Failure::Status(status), true)
            }
            Ok(Err(err)) => {
                report(pool, &instance, lease.finish(false));
                // Refused or unreachable: the request never arrived.
                let unsent = err.is_connect();
                tracing::debug!(service = %pool.service, instance = %instance.url, error = %err, "upstream request failed");
                (Failure::Transport, unsent || idempotent)
            }
            Err(_) => {
                report(pool, &instance, lease.finish(false));
                (Failure::Timeout, idempotent)
            }
        };
        let outcome = match &failure {
            Failure::Status(_) => "bad_status",
            Failure::Transport => "unreachable",
            Failure::Timeout => "timeout",
        };
        metrics::counter!("gateway_upstream_failures_total", "service" => pool.service.clone(),
            "outcome" => outcome)
        .increment(1);
        last_failure = Some(failure);
        if !retry {
            break;
        }
    }
    failure_response(&pool.service, last_failure)
}

enum Failure {
    Status(StatusCode),
    Transport,
    Timeout,
}

fn report(pool: &Pool, instance: &Instance, change: Option<BreakerState>) {
    if let Some(state) = change {
        let value = match state {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        };
        metrics::gauge!("gateway_breaker_state", "service" => pool.service.clone(),
            "instance" => instance.url.clone())
        .set(value);
    }
    match change {
        Some(BreakerState::Open) => {
            tracing::warn!(service = %pool.service, instance = %instance.url, "breaker opened")
        }
        Some(state) => {
            tracing::info!(service = %pool.service, instance = %instance.url, state = state.as_str(), "breaker changed")
        }
        None => {}
    }
}

fn failure_response(service: &str, failure: Option<Failure>) -> Response<Body> {
    let error = match failure {
        None => ApiError::unavailable(
            "service_unavailable",
            format!("no instance of the {service} service is available"),
        ),
        Some(Failure::Timeout) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            format!("the {service} service did not answer in time"),
        ),
        Some(Failure::Transport) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "upstream_failed",
            format!("the {service} service could not be reached"),
        ),
        Some(Failure::Status(status)) => ApiError::new(
            status,
            "upstream_failed",
            format!("the {service} service failed"),
        ),
    };
    error.into_response()
}

/// Headers that describe one hop's connection, not the message.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Headers the Connection header names are this hop's too.
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| name.trim().parse().ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove("keep-alive");
}

fn upstream_request(
    parts: &request::Parts,
    base: &str,
    path: &str,
    body: Bytes,
    client_ip: IpAddr,
) -> Result<hyper::Request<Full<Bytes>>, ApiError> {
    let uri: Uri = format!("{base}{path}")
        .parse()
        .map_err(|_| ApiError::invalid("invalid_path", "the request path is not valid"))?;
    let mut request = hyper::Request::builder()
        .method(parts.method.clone())
        .uri(uri)
        .body(Full::new(body))
        .map_err(|err| ApiError::internal(format!("building upstream request: {err}")))?;
    let headers = request.headers_mut();
    headers.clone_from(&parts.headers);
    strip_hop_by_hop(headers);
    headers.remove(header::HOST);
    if let Ok(value) = client_ip.to_string().parse() {
        headers.insert("x-forwarded-for", value);
    }
    Ok(request)
}

fn downstream_response(response: hyper::Response<hyper::body::Incoming>) -> Response<Body> {
    let mut response = response.map(Body::new);
    strip_hop_by_hop(response.headers_mut());
    response
}
