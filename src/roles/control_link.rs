//! How media nodes talk to the control plane: registration heartbeats,
//! stream-key checks and the list of edges.

use std::time::{Duration, Instant};

use anyhow::Context;
use buildstream_studio::{NodeInfo, Role};
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
}

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
        })
    }

    /// Asks which source `stream_key` belongs to.
    pub async fn check_stream_key(&self, stream_key: &str) -> Result<Grant, KeyCheckError> {
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

    /// Registers `info` now and every few seconds until `cancel` fires.
    /// Every assignment the control plane answers with goes to `assigned`;
    /// one still unread when the next arrives is replaced by it.
    pub async fn heartbeat(
        self,
        info: NodeInfo,
        assigned: Option<tokio::sync::watch::Sender<Option<Assignment>>>,
        cancel: CancellationToken,
    ) {
        let url = format!("{}/internal/v1/nodes/{}", self.base, info.id);
        let mut registered = false;
        let mut token_refused = false;
        loop {
            let asked_at = Instant::now();
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
