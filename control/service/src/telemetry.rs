//! What every request leaves behind: a request id and a W3C trace context
//! carried to the next hop, a span with both, and Prometheus metrics.
//!
//! The gateway starts a trace (or continues the caller's `traceparent`)
//! and passes `traceparent` and `x-request-id` to the service it forwards
//! to; a service continues the trace in its own span and stamps the trace
//! context on the events it publishes while handling the request.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use rand::RngExt;
use tracing::Instrument;

/// The request id header, taken from the client when well-formed.
pub const REQUEST_ID: &str = "x-request-id";
/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// A trace context: the trace and this hop's span in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// This hop's span, 16 lowercase hex digits.
    pub span_id: String,
    /// The caller's span, when it sent one.
    pub parent_span_id: Option<String>,
}

impl TraceContext {
    /// A new span continuing `traceparent` if it is valid, else a new
    /// trace.
    pub fn continue_from(traceparent: Option<&str>) -> Self {
        let (trace_id, parent_span_id) = match traceparent.and_then(parse_traceparent) {
            Some((trace, parent)) => (trace, Some(parent)),
            None => (random_hex::<16>(), None),
        };
        Self {
            trace_id,
            span_id: random_hex::<8>(),
            parent_span_id,
        }
    }

    /// Records this trace's id on `span` (declared with empty `trace_id`
    /// and `otel.name` fields). With spans exported, first names the span
    /// `name()` and joins it to the exported trace ([`Self::export_as`]);
    /// logs without an exporter carry no `otel.name`.
    fn name_span(&mut self, span: &tracing::Span, name: impl FnOnce() -> String) {
        if SPANS_EXPORTED.load(std::sync::atomic::Ordering::Relaxed) {
            span.record("otel.name", name());
            self.export_as(span);
        }
        span.record("trace_id", tracing::field::display(&self.trace_id));
    }

    /// Makes `span` the caller's span's child in the exported trace, and
    /// takes the ids the exporter gave it (a new trace gets the exporter's
    /// trace id), so that logs, `traceparent` headers, events and exported
    /// spans agree.
    fn export_as(&mut self, span: &tracing::Span) {
        use opentelemetry::trace::{
            SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
        };
        use tracing_opentelemetry::OpenTelemetrySpanExt;

        if let (Ok(trace_id), Some(Ok(parent))) = (
            TraceId::from_hex(&self.trace_id),
            self.parent_span_id.as_deref().map(SpanId::from_hex),
        ) {
            let caller = SpanContext::new(
                trace_id,
                parent,
                TraceFlags::SAMPLED,
                true,
                TraceState::NONE,
            );
            if span
                .set_parent(opentelemetry::Context::new().with_remote_span_context(caller))
                .is_err()
            {
                return;
            }
        }
        let context = span.context();
        let exported = context.span().span_context().clone();
        if exported.is_valid() {
            self.trace_id = exported.trace_id().to_string();
            self.span_id = exported.span_id().to_string();
        }
    }

    /// The `traceparent` naming this span as the parent of the next hop.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

/// The trace id and parent span of a version-00 `traceparent`; `None`
/// for anything malformed or all zeros.
pub fn parse_traceparent(value: &str) -> Option<(String, String)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let valid = version == "00"
        && parts.next().is_none()
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    valid.then(|| (trace.to_owned(), parent.to_owned()))
}

fn random_hex<const N: usize>() -> String {
    let bytes: [u8; N] = rand::rng().random();
    hex::encode(bytes)
}

/// A request id from a client is kept if it is short and printable;
/// otherwise one is made.
fn request_id(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(random_hex::<8>)
}

tokio::task_local! {
    /// The trace context of the request being handled, for what it causes
    /// (events) to carry.
    pub static CURRENT_TRACE: TraceContext;
}

/// Whether spans are exported (an OpenTelemetry layer is installed).
static SPANS_EXPORTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Says that this process exports its spans: requests' spans then join
/// their callers' exported traces ([`request_context`]).
pub fn exporting_spans() {
    SPANS_EXPORTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The `traceparent` of the request being handled on this task, if any.
pub fn current_traceparent() -> Option<String> {
    CURRENT_TRACE.try_with(TraceContext::traceparent).ok()
}

/// Middleware: request id and trace context in, a span with them, both
/// passed on to the next hop and returned to the caller, and the
/// request's count and latency in the metrics, labelled with `service`.
pub async fn request_context(
    State(service): State<&'static str>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "other".to_owned());
    let request_id = request_id(&request);
    let incoming = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut trace = TraceContext::continue_from(incoming.as_deref());
    let span = tracing::info_span!(
        "request",
        %method,
        route = %route,
        request_id = %request_id,
        trace_id = tracing::field::Empty,
        otel.name = tracing::field::Empty,
    );
    trace.name_span(&span, || format!("{method} {route}"));

    // The next hop (the gateway's upstream) sees this span as its parent.
    let headers = request.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&trace.traceparent()) {
        headers.insert(TRACEPARENT, value);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID, value);
    }
    let traceparent = trace.traceparent();
    let mut response = CURRENT_TRACE
        .scope(trace, next.run(request).instrument(span.clone()))
        .await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::debug!(status, ms = elapsed.as_millis() as u64, "request done");
    });
    let labels = [
        ("service", service.to_owned()),
        ("method", method.to_string()),
        ("route", route),
        ("status", status.to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..3])
        .record(elapsed.as_secs_f64());

    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID, value);
    }
    if let Ok(value) = HeaderValue::from_str(&traceparent) {
        headers.insert(TRACEPARENT, value);
    }
    response
}

/// The process's metrics recorder, installed on first use.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .unwrap_or_else(|_| PrometheusBuilder::new());
        match builder.install_recorder() {
            Ok(handle) => handle,
            // Another recorder is installed (tests): render ours anyway,
            // empty.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// A new event caused by the request being handled: it carries the
/// request's trace context, so the trace goes on in its consumers.
pub fn event(kind: &str, data: serde_json::Value) -> buildstream_backend::Event {
    buildstream_backend::Event::new(kind, data).with_traceparent(current_traceparent())
}

/// The span to handle `event` in: its lines carry the event's kind, id and
/// the trace id of the request that caused it; exported, it is a child of
/// that request's span.
pub fn event_span(event: &buildstream_backend::Event) -> tracing::Span {
    let mut trace = TraceContext::continue_from(event.traceparent.as_deref());
    let span = tracing::info_span!(
        "event",
        kind = %event.kind,
        event_id = %event.id,
        trace_id = tracing::field::Empty,
        otel.name = tracing::field::Empty,
    );
    trace.name_span(&span, || format!("handle {}", event.kind));
    span
}

/// `GET /metrics`: the Prometheus text format.
pub async fn metrics_endpoint() -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    let handle = metrics();
    handle.run_upkeep();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_continued_and_anything_else_starts_a_trace() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = TraceContext::continue_from(Some(incoming));
        assert_eq!(trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(trace.span_id, "00f067aa0ba902b7");
        assert!(parse_traceparent(&trace.traceparent()).is_some());

        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "garbage",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
            let fresh = TraceContext::continue_from(Some(bad));
            assert_ne!(fresh.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
            assert_eq!(fresh.trace_id.len(), 32);
        }
    }
}
