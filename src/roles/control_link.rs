//! How media nodes talk to the control plane: registration heartbeats,
//! stream-key checks and the list of edges.

use std::time::{Duration, Instant};

use anyhow::Context;
use buildstream_studio::{DestinationReport, NodeInfo, Role};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// How often a node re-registers; well under the control plane's node TTL.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// How soon a node that is not registered tries again, so that a node
/// started alongside the control plane is usable within a second.
const REGISTER_RETRY: Duration = Duration::from_millis(300);

/// How long one control-plane request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of the control plane's internal API, holding the node token.
#[derive(Clone)]
pub struct ControlLink {
    http: reqwest::Client,
    base: String,
    token: String,
    /// Bounds the checks in flight (keys, tokens): thousands of live
    /// sessions re-checked at once must not open as many connections to
    /// the control plane, whose listener caps connections per address.
    checks: std::sync::Arc<tokio::sync::Semaphore>,
}

/// Checks one node has in flight at the control plane at most.
const CHECKS_IN_FLIGHT: usize = 32;

/// A stream key's owner, as the control plane answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct Grant {
    /// Studio id.
    pub studio: String,
    /// Source id.
    pub source: String,
}

/// Why a stream key was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    /// No source has this key.
    #[error("stream key refused")]
    Refused,
    /// The control plane could not answer.
    #[error("control plane unavailable: {0}")]
    Unavailable(String),
}

/// What an origin reports of its destinations with each heartbeat.
pub type DestinationReporter = Box<dyn Fn() -> Vec<DestinationReport> + Send + Sync>;

/// What the control plane answers a heartbeat with.
#[derive(Debug, Deserialize)]
struct HeartbeatAnswer {
    /// Origins: the studios recorded as live on this node.
    #[serde(default)]
    broadcasts: Option<Vec<String>>,
}

/// The broadcasts the control plane had recorded for this origin when it
/// answered a heartbeat sent at `asked_at`.
#[derive(Debug, Clone)]
pub struct Assignment {
    /// Studio ids.
    pub studios: Vec<String>,
    /// When the heartbeat was sent: anything started later is too new for
    /// the answer to know about.
    pub asked_at: Instant,
}

#[derive(Serialize)]
struct KeyBody<'a> {
    stream_key: &'a str,
}

#[derive(Serialize)]
struct PlaybackBody<'a> {
    studio: &'a str,
    token: &'a str,
}

/// Why a player's token was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PlaybackCheckError {
    /// The token is not valid for the studio.
    #[error("viewer token refused")]
    Refused,
    /// The studio is not live.
    #[error("the studio is not live")]
    NotLive,
    /// The control plane could not answer.
    #[error("control plane unavailable: {0}")]
    Unavailable(String),
}

#[derive(Serialize)]
struct MediaBody<'a> {
    studio: &'a str,
    token: &'a str,
    source: &'a str,
    action: &'a str,
}

#[derive(Deserialize)]
struct MediaGrant {
    participant: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: String,
}

/// Why a participant's media request was refused.
#[derive(Debug, thiserror::Error)]
pub enum MediaCheckError {
    /// The token is not valid for the studio.
    #[error("studio token refused")]
    Refused,
    /// The participant may not do this; the reason is for them.
    #[error("{0}")]
    Forbidden(String),
    /// No such source.
    #[error("no such source")]
    NoSource,
    /// The control plane could not answer.
    #[error("control plane unavailable: {0}")]
    Unavailable(String),
}

/// Where a live studio's program is read: its origin's mesh endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ProgramLocation {
    /// Origin node id.
    pub origin: String,
    /// `host:port` of the origin's mesh endpoint.
    pub mesh_addr: String,
    /// The origin's certificate fingerprint, to pin.
    pub fingerprint: String,
}

impl ControlLink {
    /// A link to the control plane at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("building HTTP client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            checks: std::sync::Arc::new(tokio::sync::Semaphore::new(CHECKS_IN_FLIGHT)),
        })
    }

    /// Asks which source `stream_key` belongs to.
    pub async fn check_stream_key(&self, stream_key: &str) -> Result<Grant, KeyCheckError> {
        let _permit = self.checks.acquire().await;
        let response = self
            .http
            .post(format!("{}/internal/v1/ingest/authorize", self.base))
            .bearer_auth(&self.token)
            .json(&KeyBody { stream_key })
            .send()
            .await
            .map_err(|err| KeyCheckError::Unavailable(err.without_url().to_string()))?;
        match response.status() {
            status if status.is_success() => response
                .json()
                .await
                .map_err(|err| KeyCheckError::Unavailable(err.to_string())),
            reqwest::StatusCode::FORBIDDEN => Err(KeyCheckError::Refused),
            status => Err(KeyCheckError::Unavailable(format!(
                "control answered {status}"
            ))),
        }
    }

    /// Asks whether `token` may watch `studio`'s program.
    pub async fn check_playback(
        &self,
        studio: &str,
        token: &str,
    ) -> Result<(), PlaybackCheckError> {
        let _permit = self.checks.acquire().await;
        let response = self
            .http
            .post(format!("{}/internal/v1/playback/authorize", self.base))
            .bearer_auth(&self.token)
            .json(&PlaybackBody { studio, token })
            .send()
            .await
            .map_err(|err| PlaybackCheckError::Unavailable(err.without_url().to_string()))?;
        match response.status() {
            status if status.is_success() => Ok(()),
            reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
                Err(PlaybackCheckError::Refused)
            }
            reqwest::StatusCode::NOT_FOUND => Err(PlaybackCheckError::NotLive),
            status => Err(PlaybackCheckError::Unavailable(format!(
                "control answered {status}"
            ))),
        }
    }

    /// Asks whether the holder of `token` may `action` (`publish`, `play`
    /// or `identify`) `source` of `studio`; answers their participant id.
    pub async fn check_media(
        &self,
        studio: &str,
        token: &str,
        source: &str,
        action: &str,
    ) -> Result<String, MediaCheckError> {
        let _permit = self.checks.acquire().await;
        let response = self
            .http
            .post(format!("{}/internal/v1/room/authorize", self.base))
            .bearer_auth(&self.token)
            .json(&MediaBody {
                studio,
                token,
                source,
                action,
            })
            .send()
            .await
            .map_err(|err| MediaCheckError::Unavailable(err.without_url().to_string()))?;
        match response.status() {
            status if status.is_success() => response
                .json::<MediaGrant>()
                .await
                .map(|grant| grant.participant)
                .map_err(|err| MediaCheckError::Unavailable(err.to_string())),
            reqwest::StatusCode::UNAUTHORIZED => Err(MediaCheckError::Refused),
            reqwest::StatusCode::FORBIDDEN => {
                let why = response
                    .json::<ErrorBody>()
                    .await
                    .map(|body| body.error.message)
                    .unwrap_or_else(|_| "not allowed".to_owned());
                Err(MediaCheckError::Forbidden(why))
            }
            reqwest::StatusCode::NOT_FOUND => Err(MediaCheckError::NoSource),
            status => Err(MediaCheckError::Unavailable(format!(
                "control answered {status}"
            ))),
        }
    }

    /// Where `studio`'s program is read, if it is live.
    pub async fn program_location(
        &self,
        studio: &str,
    ) -> Result<ProgramLocation, PlaybackCheckError> {
        let response = self
            .http
            .get(format!(
                "{}/internal/v1/studios/{studio}/program",
                self.base
            ))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|err| PlaybackCheckError::Unavailable(err.without_url().to_string()))?;
        match response.status() {
            status if status.is_success() => response
                .json()
                .await
                .map_err(|err| PlaybackCheckError::Unavailable(err.to_string())),
            reqwest::StatusCode::NOT_FOUND => Err(PlaybackCheckError::NotLive),
            status => Err(PlaybackCheckError::Unavailable(format!(
                "control answered {status}"
            ))),
        }
    }

    /// Live nodes of a role.
    pub async fn nodes(&self, role: Role) -> anyhow::Result<Vec<NodeInfo>> {
        let role = match role {
            Role::Edge => "edge",
            Role::Origin => "origin",
        };
        let response = self
            .http
            .get(format!("{}/internal/v1/nodes?role={role}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await?
            .error_for_status()?;
        Ok(response.json().await?)
    }

    /// Registers `info` now and every few seconds until `cancel` fires,
    /// with where each destination stands when `destinations` says.
    /// Every assignment the control plane answers with goes to `assigned`;
    /// one still unread when the next arrives is replaced by it.
    pub async fn heartbeat(
        self,
        mut info: NodeInfo,
        assigned: Option<tokio::sync::watch::Sender<Option<Assignment>>>,
        destinations: Option<DestinationReporter>,
        cancel: CancellationToken,
    ) {
        let url = format!("{}/internal/v1/nodes/{}", self.base, info.id);
        let mut registered = false;
        let mut token_refused = false;
        loop {
            let asked_at = Instant::now();
            if let Some(report) = &destinations {
                info.destinations = report();
            }
            let sent = self
                .http
                .put(&url)
                .bearer_auth(&self.token)
                .json(&info)
                .send()
                .await
                .and_then(|r| r.error_for_status());
            let sent = match sent {
                // An empty or unknown answer assigns nothing either way.
                Ok(response) => response
                    .bytes()
                    .await
                    .map(|body| serde_json::from_slice::<HeartbeatAnswer>(&body).ok()),
                Err(err) => Err(err),
            };
            if let (Ok(Some(answer)), Some(assigned)) = (&sent, &assigned) {
                if let Some(studios) = &answer.broadcasts {
                    assigned.send_replace(Some(Assignment {
                        studios: studios.clone(),
                        asked_at,
                    }));
                }
            }
            match sent {
                Ok(_) if !registered => {
                    tracing::info!(node = %info.id, "registered with control plane");
                    registered = true;
                }
                Ok(_) => {}
                Err(err) if err.status() == Some(reqwest::StatusCode::UNAUTHORIZED) => {
                    // Said once: the token will not fix itself, retries are quiet.
                    if !token_refused {
                        tracing::warn!(node = %info.id, "control plane refused the node token");
                        token_refused = true;
                    }
                    registered = false;
                }
                Err(err) => {
                    if registered {
                        tracing::warn!(node = %info.id, error = %err.without_url(), "heartbeat failed");
                    } else {
                        tracing::debug!(node = %info.id, error = %err.without_url(), "control plane not reachable yet");
                    }
                    registered = false;
                }
            }
            let pause = if registered {
                HEARTBEAT_EVERY
            } else {
                REGISTER_RETRY
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}
