//! What every service's OpenAPI document shares: the error body, the ways
//! a caller authenticates, and the route that serves the document.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi;
use utoipa::{Modify, ToSchema};

/// The body of every error response.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    /// Stable, machine-readable code (`invalid_name`, `not_found`, …).
    code: String,
    /// For people.
    message: String,
}

/// Security scheme name: a user's access token from `POST /api/v1/sessions`.
pub const USER: &str = "user";
/// Security scheme name: a studio token (guests, media), from joining a room.
pub const STUDIO: &str = "studio";
/// Security scheme name: the node token edges and origins share with the
/// control plane.
pub const NODE: &str = "node";

/// Adds the bearer schemes [`USER`], [`STUDIO`] and [`NODE`].
pub struct BearerSchemes;

impl Modify for BearerSchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, format, about) in [
            (USER, "JWT", "An access token from signing in."),
            (
                STUDIO,
                "JWT",
                "A studio token from joining a room or redeeming an invite.",
            ),
            (NODE, "opaque", "The node token of edges and origins."),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format(format)
                        .description(Some(about))
                        .build(),
                ),
            );
        }
    }
}

/// `GET /openapi.json`, serving `document`.
pub fn route<S: Clone + Send + Sync + 'static>(document: OpenApi) -> Router<S> {
    let document = std::sync::Arc::new(document);
    Router::new().route(
        "/openapi.json",
        get(move || {
            let document = document.clone();
            async move { Json(document.as_ref().clone()) }
        }),
    )
}

/// The paths `source` (Rust) hands to `.route(…)`: for a test that every
/// route a service serves is in its document.
pub fn declared_routes(source: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        rest = rest[at + ".route(".len()..].trim_start();
        if let Some(quoted) = rest.strip_prefix('"') {
            if let Some(end) = quoted.find('"') {
                paths.push(quoted[..end].to_owned());
            }
        }
    }
    paths
}

/// The routes in `sources` that `document` does not describe, the document
/// route itself aside.
pub fn undocumented(document: &OpenApi, sources: &[&str]) -> Vec<String> {
    sources
        .iter()
        .flat_map(|source| declared_routes(source))
        .filter(|path| path != "/openapi.json" && !document.paths.paths.contains_key(path))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_read_from_source_however_they_are_wrapped() {
        let source = r#"
            Router::new()
                .route("/a", get(a))
                .route(
                    "/b/{id}",
                    post(b),
                )
                .route(PATH, get(c))
        "#;
        assert_eq!(declared_routes(source), ["/a", "/b/{id}"]);
    }
}
