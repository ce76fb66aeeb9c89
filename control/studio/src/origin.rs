//! The studio service's client of an origin's internal API: it starts,
//! steers and stops the composition of a studio's program there.

use std::collections::HashMap;
use std::time::Duration;

use buildstream_service::{ApiError, NodeToken};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use crate::scene::Scene;
use crate::store::{DestinationRow, SourceRow, StudioRow};

/// How long an origin may take to answer.
const ORIGIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Output profile sent to the origin.
#[derive(Debug, Clone, Serialize)]
pub struct OutputSpec {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub framerate: u32,
    /// H.264 bitrate; the origin lowers it to what every destination accepts.
    pub video_bitrate_kbps: u32,
}

/// A destination as the origin takes it.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationSpec {
    /// Destination id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `youtube`, `twitch`, `facebook` or `custom`.
    pub platform: String,
    /// Ingest URL; `None` for the platform's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The platform's stream key.
    pub stream_key: String,
}

/// The scene as the origin composes it: images as plain base64, display
/// names for the placeholders of absent sources.
#[derive(Debug, Clone, Serialize)]
pub struct SceneSpec {
    /// `solo`, `split`, `grid`, `pip` or `screen`.
    pub layout: crate::scene::Layout,
    /// Source ids in slot order.
    pub on_stage: Vec<String>,
    /// The banner.
    pub banner: crate::scene::Banner,
    /// The scrolling ticker.
    pub ticker: crate::scene::Banner,
    /// PNG bytes, base64.
    pub logo: Option<String>,
    /// Background colour and optional image (base64).
    pub background: BackgroundSpec,
    /// `#rrggbb`.
    pub brand_color: String,
    /// Source id to display name.
    pub names: HashMap<String, String>,
}

/// Background as the origin takes it.
#[derive(Debug, Clone, Serialize)]
pub struct BackgroundSpec {
    /// `#rrggbb`.
    pub color: String,
    /// PNG or JPEG bytes, base64.
    pub image: Option<String>,
}

/// Everything an origin needs to compose and restream a studio.
#[derive(Debug, Clone, Serialize)]
pub struct BroadcastSpec {
    /// Output profile.
    pub output: OutputSpec,
    /// Scene.
    pub scene: SceneSpec,
    /// Destinations.
    pub destinations: Vec<DestinationSpec>,
}

/// A destination's state as the origin reports it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DestinationStatus {
    /// Destination id.
    pub id: String,
    /// `connecting`, `live`, `retrying`, `failed` or `stopped`.
    pub state: String,
    /// When it entered that state (RFC 3339).
    #[serde(default)]
    pub since: Option<String>,
    /// The last error, if any.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Bytes sent to this destination.
    #[serde(default)]
    pub bytes_sent: u64,
    /// Packets dropped because the destination could not keep up.
    #[serde(default)]
    pub packets_dropped: u64,
    /// Connections that reached `live`; more than one means it reconnected.
    #[serde(default)]
    pub connections: u64,
}

/// A broadcast's state as the origin reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct BroadcastStatus {
    /// `live`; `stalled` when the pipeline runs but no video came out for
    /// seconds; `failed` when it broke.
    pub state: String,
    /// Why it failed.
    #[serde(default)]
    pub failure: Option<String>,
    /// Encoded video frames so far.
    #[serde(default)]
    pub output_frames: u64,
    /// Milliseconds since the last encoded video frame.
    #[serde(default)]
    pub last_output_ms_ago: Option<u64>,
    /// Destinations and their states.
    #[serde(default)]
    pub destinations: Vec<DestinationStatus>,
}

/// HTTP client of origins' internal APIs.
#[derive(Clone)]
pub struct OriginClient {
    http: reqwest::Client,
    token: NodeToken,
}

impl OriginClient {
    /// A client presenting `token`.
    pub fn new(token: NodeToken) -> Self {
        let tls = rustls::ClientConfig::builder_with_provider(
            rustls::crypto::ring::default_provider().into(),
        )
        .with_safe_default_protocol_versions()
        .map(|builder| {
            builder
                .with_root_certificates(rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                })
                .with_no_client_auth()
        });
        let builder = reqwest::Client::builder().timeout(ORIGIN_TIMEOUT);
        let builder = match tls {
            Ok(config) => builder.use_preconfigured_tls(config),
            Err(_) => builder,
        };
        // Building fails only if the TLS backend cannot initialise, which the
        // preconfigured ring-based config rules out.
        let http = builder.build().unwrap_or_default();
        Self { http, token }
    }

    /// Starts (or replaces) the studio's broadcast on the origin at `base`.
    pub async fn start(
        &self,
        base: &str,
        studio: &str,
        spec: &BroadcastSpec,
    ) -> Result<(), ApiError> {
        self.call(
            Method::PUT,
            &format!("{base}/internal/v1/broadcasts/{studio}"),
            Some(spec),
        )
        .await
        .map(drop)
    }

    /// Applies a new scene live.
    pub async fn update_scene(
        &self,
        base: &str,
        studio: &str,
        scene: &SceneSpec,
    ) -> Result<(), ApiError> {
        let url = format!("{base}/internal/v1/broadcasts/{studio}/scene");
        self.call(Method::PUT, &url, Some(scene)).await.map(drop)
    }

    /// Adds or replaces a destination live.
    pub async fn put_destination(
        &self,
        base: &str,
        studio: &str,
        dest: &DestinationSpec,
    ) -> Result<(), ApiError> {
        let url = format!(
            "{base}/internal/v1/broadcasts/{studio}/destinations/{}",
            dest.id
        );
        self.call(Method::PUT, &url, Some(dest)).await.map(drop)
    }

    /// Removes a destination live.
    pub async fn remove_destination(
        &self,
        base: &str,
        studio: &str,
        dest: &str,
    ) -> Result<(), ApiError> {
        let url = format!("{base}/internal/v1/broadcasts/{studio}/destinations/{dest}");
        self.call::<()>(Method::DELETE, &url, None).await.map(drop)
    }

    /// The broadcast's status.
    pub async fn status(&self, base: &str, studio: &str) -> Result<BroadcastStatus, ApiError> {
        let url = format!("{base}/internal/v1/broadcasts/{studio}");
        let body = self.call::<()>(Method::GET, &url, None).await?;
        serde_json::from_slice(&body)
            .map_err(|err| ApiError::unavailable("origin_error", format!("origin status: {err}")))
    }

    /// Stops the broadcast; an origin that no longer knows it is fine.
    pub async fn stop(&self, base: &str, studio: &str) -> Result<(), ApiError> {
        let url = format!("{base}/internal/v1/broadcasts/{studio}");
        match self.call::<()>(Method::DELETE, &url, None).await {
            Err(err) if err.status == StatusCode::NOT_FOUND => Ok(()),
            other => other.map(drop),
        }
    }

    async fn call<T: Serialize>(
        &self,
        method: Method,
        url: &str,
        body: Option<&T>,
    ) -> Result<Vec<u8>, ApiError> {
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(self.token.expose());
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|err| {
            ApiError::unavailable("origin_unreachable", format!("origin unreachable: {err}"))
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|err| ApiError::unavailable("origin_error", format!("origin: {err}")))?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        if status == StatusCode::NOT_FOUND {
            return Err(ApiError::not_found("broadcast on origin"));
        }
        if status.is_client_error() {
            // The origin refused what it was given (an image it cannot
            // decode, a destination it will not send to): the caller's
            // request was at fault, and the origin says how.
            return Err(refusal(&bytes));
        }
        let message = String::from_utf8_lossy(&bytes)
            .chars()
            .take(300)
            .collect::<String>();
        Err(ApiError::unavailable(
            "origin_error",
            format!("origin answered {status}: {message}"),
        ))
    }
}

/// An origin's 4xx answer as an error for the user: its code when it is one
/// users act on, its message as given.
fn refusal(body: &[u8]) -> ApiError {
    #[derive(Deserialize)]
    struct Body {
        error: Detail,
    }
    #[derive(Deserialize)]
    struct Detail {
        code: String,
        message: String,
    }
    let Ok(Body { error }) = serde_json::from_slice::<Body>(body) else {
        return ApiError::invalid("origin_refused", "the origin refused the request");
    };
    let code = match error.code.as_str() {
        "invalid_image" => "invalid_image",
        "invalid_destination" => "invalid_destination",
        "duplicate_destination" => "invalid_destination",
        _ => "origin_refused",
    };
    let message: String = error.message.chars().take(300).collect();
    ApiError::invalid(code, message)
}

/// Default video bitrate for an output profile, in kb/s.
pub fn video_bitrate_kbps(height: u32, fps: u32) -> u32 {
    let base = if height > 720 { 6000 } else { 4500 };
    if fps > 30 {
        base * 3 / 2
    } else {
        base
    }
}

/// Builds the origin's view of a studio.
pub fn broadcast_spec(
    studio: &StudioRow,
    sources: &[SourceRow],
    destinations: &[DestinationRow],
) -> BroadcastSpec {
    let width = studio.output_width as u32;
    let height = studio.output_height as u32;
    let fps = studio.output_fps as u32;
    BroadcastSpec {
        output: OutputSpec {
            width,
            height,
            framerate: fps,
            video_bitrate_kbps: video_bitrate_kbps(height, fps),
        },
        scene: scene_spec(&studio.scene(), sources),
        destinations: destinations.iter().map(destination_spec).collect(),
    }
}

/// The origin's view of a scene.
pub fn scene_spec(scene: &Scene, sources: &[SourceRow]) -> SceneSpec {
    // A validated data URL's payload is already standard base64.
    let base64 = |data_url: &String| {
        data_url
            .split_once(";base64,")
            .map(|(_, payload)| payload.to_owned())
    };
    SceneSpec {
        layout: scene.layout,
        on_stage: scene.on_stage.clone(),
        banner: scene.banner.clone(),
        ticker: scene.ticker.clone(),
        logo: scene.logo.as_ref().and_then(base64),
        background: BackgroundSpec {
            color: scene.background.color.clone(),
            image: scene.background.image.as_ref().and_then(base64),
        },
        brand_color: scene.brand_color.clone(),
        names: sources
            .iter()
            .map(|s| (s.id.clone(), s.name.clone()))
            .collect(),
    }
}

/// The origin's view of a destination.
pub fn destination_spec(dest: &DestinationRow) -> DestinationSpec {
    DestinationSpec {
        id: dest.id.clone(),
        name: dest.name.clone(),
        platform: dest.platform.clone(),
        url: (!dest.url.is_empty()).then(|| dest.url.clone()),
        stream_key: dest.stream_key.clone(),
    }
}
