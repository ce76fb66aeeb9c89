//! Restreaming the program to RTMP and RTMPS destinations.
//!
//! Every destination has its own sender task, its own bounded queue fed by
//! the [`Fanout`] and its own reconnect loop; a destination that is down,
//! slow or refusing only ever loses its own packets. Destinations can be
//! added and removed while the program is live.

mod preset;
mod sender;
mod tls;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use buildstream_mesh::net::is_local_host;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use preset::{Limits, Platform};
pub use tls::client_config;

use crate::program::{Fanout, QUEUE_PACKETS};
use crate::rtmp::{ProgramInfo, PublishTarget};
use crate::scene::{OutputProfile, KEYFRAME_INTERVAL_SECONDS};
use sender::{Sender, StatusCell};

/// How long a removed or stopped sender gets to unpublish and close.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Why a destination was refused or could not be managed.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DestinationError {
    /// The URL is not `rtmp://` or `rtmps://host[:port]/app`.
    #[error("destination url must be rtmp:// or rtmps://host[:port]/app")]
    Url,
    /// A custom destination needs a URL.
    #[error("a custom destination needs a url")]
    MissingUrl,
    /// The stream key is empty or has control characters.
    #[error("stream key must be non-empty printable text")]
    StreamKey,
    /// The destination id is not 1-64 characters of `[A-Za-z0-9_-]`.
    #[error("destination ids must be 1-64 characters of [A-Za-z0-9_-]")]
    Id,
    /// The display name is too long.
    #[error("destination names are limited to 100 characters")]
    Name,
    /// The platform cannot take the program's keyframe interval.
    #[error("{platform} needs a keyframe at least every {max} s")]
    KeyframeInterval {
        /// The platform.
        platform: &'static str,
        /// Its limit in seconds.
        max: u32,
    },
    /// No destination with that id.
    #[error("no such destination")]
    NotFound,
    /// The TLS configuration (extra CA certificates) could not be loaded.
    #[error("tls configuration: {0}")]
    Tls(String),
    /// The host is a loopback, private, link-local or otherwise internal
    /// address, which this origin is configured not to send to.
    #[error("destination host is a private or local address")]
    PrivateAddress,
}

/// A destination's id within its broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DestinationId(String);

impl DestinationId {
    /// Parses an id.
    pub fn new(id: &str) -> Result<Self, DestinationError> {
        if buildstream_mesh::is_valid_part(id) {
            Ok(Self(id.to_owned()))
        } else {
            Err(DestinationError::Id)
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DestinationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A destination as the control plane describes it.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct DestinationSpec {
    /// Display name shown in the studio.
    #[serde(default)]
    pub name: String,
    /// Which platform; presets know their ingest URL and limits.
    #[serde(default)]
    pub platform: Platform,
    /// `rtmp://` or `rtmps://host[:port]/app`; required for `custom`, an
    /// override (another ingest server) for presets.
    #[serde(default)]
    pub url: Option<String>,
    /// The stream key. Secret: never logged, never reported back.
    pub stream_key: String,
}

impl fmt::Debug for DestinationSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DestinationSpec")
            .field("name", &self.name)
            .field("platform", &self.platform)
            .field("url", &self.url)
            .field("stream_key", &"<redacted>")
            .finish()
    }
}

/// Where a sender connects: parsed from the destination URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    /// Whether to speak TLS (rtmps).
    pub secure: bool,
    /// Host name or IP address (without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// What `connect` and `publish` need.
    pub target: PublishTarget,
}

impl Endpoint {
    /// Parses `rtmp[s]://host[:port]/app[/...]` and pairs it with the key.
    pub fn parse(url: &str, stream_key: &str) -> Result<Self, DestinationError> {
        if stream_key.is_empty() || stream_key.chars().any(char::is_control) {
            return Err(DestinationError::StreamKey);
        }
        let (secure, rest) = if let Some(rest) = url.strip_prefix("rtmps://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("rtmp://") {
            (false, rest)
        } else {
            return Err(DestinationError::Url);
        };
        let (authority, path) = rest.split_once('/').ok_or(DestinationError::Url)?;
        let app = path.trim_matches('/');
        if app.is_empty() || app.contains(char::is_whitespace) {
            return Err(DestinationError::Url);
        }
        let (host, port) = split_authority(authority)?;
        let port = port.unwrap_or(if secure { 443 } else { 1935 });
        let scheme = if secure { "rtmps" } else { "rtmp" };
        let shown_host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        Ok(Self {
            secure,
            port,
            target: PublishTarget {
                app: app.to_owned(),
                tc_url: format!("{scheme}://{shown_host}:{port}/{app}"),
                stream_key: stream_key.to_owned(),
            },
            host,
        })
    }
}

fn split_authority(authority: &str) -> Result<(String, Option<u16>), DestinationError> {
    if authority.contains('@') {
        // Credentials in the URL would end up in logs; keys go in stream_key.
        return Err(DestinationError::Url);
    }
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(DestinationError::Url)?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return Err(DestinationError::Url),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
    if !valid_host {
        return Err(DestinationError::Url);
    }
    let port = port
        .map(|p| p.parse::<u16>().map_err(|_| DestinationError::Url))
        .transpose()?;
    if port == Some(0) {
        return Err(DestinationError::Url);
    }
    Ok((host.to_owned(), port))
}

/// Where a destination stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationState {
    /// Connecting, handshaking or waiting for the server to accept.
    Connecting,
    /// Publishing.
    Live,
    /// The last attempt failed; another follows after a backoff.
    Retrying {
        /// Why the last attempt failed.
        last_error: String,
    },
    /// Given up: the server keeps refusing (bad key, bad certificate).
    Failed {
        /// Why.
        reason: String,
    },
    /// Stopped on request.
    Stopped,
}

impl DestinationState {
    /// The state's name in status JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            DestinationState::Connecting => "connecting",
            DestinationState::Live => "live",
            DestinationState::Retrying { .. } => "retrying",
            DestinationState::Failed { .. } => "failed",
            DestinationState::Stopped => "stopped",
        }
    }
}

/// A snapshot of one destination, as reported in the broadcast status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DestinationStatus {
    /// The destination id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Platform.
    pub platform: &'static str,
    /// `connecting`, `live`, `retrying`, `failed` or `stopped`.
    pub state: &'static str,
    /// When the current state began (RFC 3339, UTC).
    pub since: String,
    /// The most recent error, kept after recovery; the reason when failed.
    pub last_error: Option<String>,
    /// Bytes written to the server over all connections.
    pub bytes_sent: u64,
    /// Packets lost because the destination's queue was full.
    pub packets_dropped: u64,
    /// Connections that reached `live`.
    pub connections: u64,
}

/// The senders of one broadcast.
pub struct Destinations {
    fanout: Fanout,
    profile: OutputProfile,
    tls: Arc<rustls::ClientConfig>,
    /// Whether private and local addresses may be sent to.
    allow_private: bool,
    entries: Mutex<HashMap<DestinationId, Entry>>,
}

struct Entry {
    /// As given; kept to tell a repeated PUT from a changed one.
    spec: DestinationSpec,
    status: Arc<StatusCell>,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Destinations {
    /// A set of destinations fed from `fanout`, for a program of `profile`.
    /// Unless `allow_private`, destinations on loopback, private or other
    /// internal addresses are refused, by URL and again after each lookup.
    pub fn new(
        fanout: Fanout,
        profile: OutputProfile,
        tls: Arc<rustls::ClientConfig>,
        allow_private: bool,
    ) -> Self {
        Self {
            fanout,
            profile,
            tls,
            allow_private,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Checks a destination without starting it.
    pub fn check(&self, spec: &DestinationSpec) -> Result<(), DestinationError> {
        self.endpoint(spec).map(|_| ())
    }

    /// Starts a sender for `id`, replacing (and stopping) any previous one.
    /// The same spec again leaves a working sender alone; one that gave up
    /// starts over. Must be called within a Tokio runtime.
    pub async fn add(
        &self,
        id: DestinationId,
        spec: DestinationSpec,
    ) -> Result<(), DestinationError> {
        let endpoint = self.endpoint(&spec)?;
        let unchanged = lock(&self.entries).get(&id).is_some_and(|entry| {
            entry.spec == spec
                && !matches!(
                    entry.status.state(),
                    DestinationState::Failed { .. } | DestinationState::Stopped
                )
        });
        if unchanged {
            return Ok(());
        }
        self.remove(&id).await.ok();

        let subscription = self.fanout.attach(id.as_str(), QUEUE_PACKETS);
        let status = Arc::new(StatusCell::new(subscription.dropped.clone()));
        let cancel = CancellationToken::new();
        let sender = Sender {
            id: id.clone(),
            endpoint,
            info: self.program_info(),
            tls: self.tls.clone(),
            allow_private: self.allow_private,
            status: status.clone(),
            packets: subscription.packets,
            cancel: cancel.clone(),
        };
        let task = tokio::spawn(sender.run());
        let entry = Entry {
            spec,
            status,
            cancel,
            task,
        };
        lock(&self.entries).insert(id, entry);
        Ok(())
    }

    /// Stops a destination: its sender unpublishes and closes.
    pub async fn remove(&self, id: &DestinationId) -> Result<(), DestinationError> {
        let entry = lock(&self.entries)
            .remove(id)
            .ok_or(DestinationError::NotFound)?;
        self.fanout.detach(id.as_str());
        stop_entry(entry).await;
        Ok(())
    }

    /// Ids of the current destinations.
    pub fn ids(&self) -> Vec<DestinationId> {
        lock(&self.entries).keys().cloned().collect()
    }

    /// Stops every destination, each unpublishing and closing in parallel.
    pub async fn stop_all(&self) {
        let entries: Vec<(DestinationId, Entry)> = lock(&self.entries).drain().collect();
        for (id, entry) in &entries {
            self.fanout.detach(id.as_str());
            entry.cancel.cancel();
        }
        futures::future::join_all(entries.into_iter().map(|(_, entry)| stop_entry(entry))).await;
    }

    /// A snapshot of every destination, sorted by id.
    pub fn statuses(&self) -> Vec<DestinationStatus> {
        let entries = lock(&self.entries);
        let mut statuses: Vec<DestinationStatus> = entries
            .iter()
            .map(|(id, entry)| {
                entry
                    .status
                    .snapshot(id, &entry.spec.name, entry.spec.platform)
            })
            .collect();
        statuses.sort_by(|a, b| a.id.cmp(&b.id));
        statuses
    }

    /// The highest video bitrate every current destination accepts.
    pub fn bitrate_ceiling_kbps(&self) -> u32 {
        lock(&self.entries)
            .values()
            .map(|e| e.spec.platform.limits(&self.profile).max_video_bitrate_kbps)
            .min()
            .unwrap_or(u32::MAX)
    }

    /// What senders announce in `onMetaData`.
    fn program_info(&self) -> ProgramInfo {
        ProgramInfo {
            width: self.profile.width(),
            height: self.profile.height(),
            framerate: self.profile.framerate(),
            video_bitrate_kbps: self.profile.video_bitrate_kbps(),
            audio_bitrate_kbps: crate::compositor::AUDIO_BITRATE_KBPS,
            audio_sample_rate: crate::compositor::AUDIO_RATE,
            audio_channels: crate::compositor::AUDIO_CHANNELS,
        }
    }

    fn endpoint(&self, spec: &DestinationSpec) -> Result<Endpoint, DestinationError> {
        if spec.name.chars().count() > 100 {
            return Err(DestinationError::Name);
        }
        let limits = spec.platform.limits(&self.profile);
        if KEYFRAME_INTERVAL_SECONDS > limits.max_keyframe_interval_seconds {
            return Err(DestinationError::KeyframeInterval {
                platform: spec.platform.as_str(),
                max: limits.max_keyframe_interval_seconds,
            });
        }
        let url = match (&spec.url, spec.platform.default_url()) {
            (Some(url), _) => url.as_str(),
            (None, Some(url)) => url,
            (None, None) => return Err(DestinationError::MissingUrl),
        };
        let endpoint = Endpoint::parse(url, &spec.stream_key)?;
        if !self.allow_private && is_local_host(&endpoint.host) {
            return Err(DestinationError::PrivateAddress);
        }
        Ok(endpoint)
    }
}

impl Drop for Destinations {
    fn drop(&mut self) {
        // A broadcast dropped without `stop_all` must not leave senders
        // publishing on their own.
        for entry in lock(&self.entries).values() {
            entry.cancel.cancel();
        }
    }
}

async fn stop_entry(entry: Entry) {
    entry.cancel.cancel();
    let mut task = entry.task;
    if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
        tracing::warn!("destination sender did not stop in time, aborting it");
        task.abort();
    }
    entry.status.set(DestinationState::Stopped);
}

/// RFC 3339 in UTC, to the second.
pub(crate) fn rfc3339(at: SystemTime) -> String {
    let at = time::OffsetDateTime::from(at)
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data; a panicking holder leaves it usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl DestinationStatus {
    /// Whether the destination is publishing.
    pub fn is_live(&self) -> bool {
        self.state == "live"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_destinations_are_refused_unless_allowed() {
        let tls = client_config(None).unwrap();
        let spec: DestinationSpec = serde_json::from_str(
            r#"{"platform":"custom","url":"rtmp://192.168.1.20/live","stream_key":"k"}"#,
        )
        .unwrap();
        let strict = Destinations::new(Fanout::new(), OutputProfile::default(), tls.clone(), false);
        assert_eq!(strict.check(&spec), Err(DestinationError::PrivateAddress));
        let local = Destinations::new(Fanout::new(), OutputProfile::default(), tls, true);
        assert_eq!(local.check(&spec), Ok(()));
    }

    #[test]
    fn parses_urls() {
        let e = Endpoint::parse("rtmp://127.0.0.1:19350/live", "key").unwrap();
        assert!(!e.secure);
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 19350));
        assert_eq!(e.target.app, "live");
        assert_eq!(e.target.tc_url, "rtmp://127.0.0.1:19350/live");

        let e = Endpoint::parse("rtmps://live-api-s.facebook.com:443/rtmp/", "k").unwrap();
        assert!(e.secure);
        assert_eq!(e.target.app, "rtmp");

        let e = Endpoint::parse("rtmps://a.rtmps.youtube.com/live2", "k").unwrap();
        assert_eq!(e.port, 443);

        let e = Endpoint::parse("rtmp://[::1]/live", "k").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 1935));
        assert_eq!(e.target.tc_url, "rtmp://[::1]:1935/live");
    }

    #[test]
    fn refuses_bad_urls_and_keys() {
        for url in [
            "http://example.com/live",
            "rtmp://example.com",
            "rtmp://example.com/",
            "rtmp://user:pw@example.com/live",
            "rtmp://example.com:99999/live",
            "rtmp://exa mple.com/live",
            "rtmp://[::1/live",
        ] {
            assert_eq!(
                Endpoint::parse(url, "k"),
                Err(DestinationError::Url),
                "{url}"
            );
        }
        assert_eq!(
            Endpoint::parse("rtmp://h/live", ""),
            Err(DestinationError::StreamKey)
        );
        assert_eq!(
            Endpoint::parse("rtmp://h/live", "a\nb"),
            Err(DestinationError::StreamKey)
        );
    }

    #[test]
    fn presets_fill_in_the_url_and_custom_needs_one() {
        let tls = client_config(None).unwrap();
        let set = Destinations::new(Fanout::new(), OutputProfile::default(), tls, true);
        let spec = |platform, url: Option<&str>| DestinationSpec {
            name: "x".into(),
            platform,
            url: url.map(str::to_owned),
            stream_key: "k".into(),
        };
        assert!(set.check(&spec(Platform::Twitch, None)).is_ok());
        assert_eq!(
            set.check(&spec(Platform::Custom, None)),
            Err(DestinationError::MissingUrl)
        );
        let endpoint = set.endpoint(&spec(Platform::Youtube, None)).unwrap();
        assert_eq!(endpoint.host, "a.rtmps.youtube.com");
        assert_eq!(endpoint.target.app, "live2");
    }

    #[test]
    fn the_stream_key_stays_out_of_debug_output() {
        let spec: DestinationSpec =
            serde_json::from_str(r#"{"platform":"twitch","stream_key":"live_123_secret"}"#)
                .unwrap();
        assert!(!format!("{spec:?}").contains("secret"));
    }

    #[test]
    fn formats_rfc3339() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(rfc3339(at), "2023-11-14T22:13:20Z");
    }
}
