//! The browser app, served by the control plane's HTTP listener at `/`:
//! files from the built app (`web/dist`), and its `index.html` for any
//! other page path, so that the app's own routes survive a reload.

use std::path::{Component, Path, PathBuf};

use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use buildstream_service::ApiError;

/// What is answered for paths no route took.
#[derive(Clone)]
pub struct WebApp {
    dir: PathBuf,
}

impl WebApp {
    /// The app built into `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// Answers a request no API route took.
    pub async fn serve(self, request: Request) -> Response {
        let path = request.uri().path();
        let is_api = path.starts_with("/api/") || path.starts_with("/internal/");
        if is_api {
            return ApiError::no_route().await.into_response();
        }
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return ApiError::wrong_method().await.into_response();
        }
        let Some(relative) = safe_relative(path) else {
            return ApiError::no_route().await.into_response();
        };
        // Files (assets with hashed names, icons); anything else is a page
        // of the app.
        let file = self.dir.join(&relative);
        let looks_like_file = relative
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains('.'));
        if looks_like_file {
            return match tokio::fs::read(&file).await {
                Ok(bytes) => with_type(bytes, &file, true),
                Err(_) => ApiError::no_route().await.into_response(),
            };
        }
        let index = self.dir.join("index.html");
        match tokio::fs::read(&index).await {
            Ok(bytes) => with_type(bytes, &index, false),
            Err(_) => (
                StatusCode::NOT_FOUND,
                format!(
                    "The web app is not built in {}: run `make dev` (or `npm run build` in web/).\n",
                    self.dir.display()
                ),
            )
                .into_response(),
        }
    }
}

/// The request path as a relative path with no `..`, or `None`.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let relative = Path::new(path.trim_start_matches('/'));
    relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| relative.to_path_buf())
}

fn with_type(bytes: Vec<u8>, path: &Path, immutable: bool) -> Response {
    let kind = match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    };
    // Built assets carry a content hash in their names; pages must always
    // be fetched fresh to pick up a new build.
    let cache = if immutable && path.components().any(|c| c.as_os_str() == "assets") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = bytes.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_climb_out_are_refused() {
        assert!(safe_relative("/../etc/passwd").is_none());
        assert!(safe_relative("/assets/../../x").is_none());
        assert_eq!(
            safe_relative("/assets/index-1.js"),
            Some(PathBuf::from("assets/index-1.js"))
        );
        assert_eq!(safe_relative("/"), Some(PathBuf::new()));
    }
}
