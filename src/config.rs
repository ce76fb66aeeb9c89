//! Configuration: a TOML file, overridden by `BUILDSTREAM_*` environment
//! variables, overridden by command-line flags. Every field has a default
//! that suits `buildstream dev` on one machine.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use serde::{Deserialize, Serialize};

/// The whole configuration, as read from the TOML file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where databases, node identities and generated secrets live.
    pub data_dir: PathBuf,
    /// Region this node runs in.
    pub region: String,
    /// Shared secret between media nodes and the control plane. Generated
    /// into the data directory when unset (fine for one machine).
    pub node_token: Option<String>,
    /// Secret that signs access tokens (at least 32 bytes). Generated into
    /// the data directory when unset.
    pub token_secret: Option<String>,
    /// Control plane settings.
    /// Whether destinations on loopback, private or other internal
    /// addresses are accepted. Unset: yes in `dev` (a studio on this
    /// machine), no for `control` and `origin` (a server must not be made
    /// to connect inward).
    pub allow_private_destinations: Option<bool>,
    pub control: ControlSettings,
    /// Edge settings.
    pub edge: EdgeSettings,
    /// Origin settings.
    pub origin: OriginSettings,
}

/// `[control]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlSettings {
    /// HTTP API address.
    pub listen: SocketAddr,
    /// Ingest URL handed to sources when no edge has registered.
    pub default_ingest_url: String,
    /// Edge HTTP base (WHIP, WebRTC) handed out when no edge has registered.
    pub default_edge_http_url: String,
    /// The built web app, served at `/`.
    pub web_dir: PathBuf,
}

/// `[edge]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeSettings {
    /// Node id, unique in the deployment.
    pub id: String,
    /// RTMP ingest address.
    pub rtmp_listen: SocketAddr,
    /// Mesh (QUIC, UDP) address.
    pub mesh_listen: SocketAddr,
    /// Mesh address peers dial, when it differs from `mesh_listen`.
    pub mesh_public: Option<String>,
    /// Ingest URL encoders are told to use; derived from `rtmp_listen` when unset.
    pub public_ingest_url: Option<String>,
    /// HTTP address for WHIP and WebRTC signaling.
    pub http_listen: SocketAddr,
    /// Base URL clients reach `http_listen` at; derived from it when unset.
    pub public_http_url: Option<String>,
    /// UDP address every WebRTC peer connection uses.
    pub webrtc_listen: SocketAddr,
    /// Addresses announced to WebRTC clients as candidates (with the
    /// `webrtc_listen` port); the bound address when empty.
    pub webrtc_announce: Vec<IpAddr>,
    /// Remote networks WebRTC media is exchanged with (`10.0.0.0/8`, `::1`);
    /// any when empty.
    pub webrtc_remote_networks: Vec<String>,
    /// Control plane base URL.
    pub control_url: String,
}

/// `[origin]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OriginSettings {
    /// Node id, unique in the deployment.
    pub id: String,
    /// Internal API address (the control plane drives broadcasts here).
    pub listen: SocketAddr,
    /// URL the control plane reaches the internal API at; derived from
    /// `listen` when unset.
    pub public_api_url: Option<String>,
    /// Mesh (QUIC, UDP) address edges read the program from.
    pub mesh_listen: SocketAddr,
    /// Mesh address edges dial, when it differs from `mesh_listen`.
    pub mesh_public: Option<String>,
    /// Control plane base URL.
    pub control_url: String,
    /// Extra CA certificates (PEM) trusted for `rtmps://` destinations.
    pub extra_ca_file: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            region: "local".to_owned(),
            node_token: None,
            token_secret: None,
            allow_private_destinations: None,
            control: ControlSettings::default(),
            edge: EdgeSettings::default(),
            origin: OriginSettings::default(),
        }
    }
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            default_ingest_url: "rtmp://127.0.0.1:1935/live".to_owned(),
            default_edge_http_url: "http://127.0.0.1:8082".to_owned(),
            web_dir: PathBuf::from("web/dist"),
        }
    }
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            id: "edge-1".to_owned(),
            rtmp_listen: SocketAddr::from(([127, 0, 0, 1], 1935)),
            mesh_listen: SocketAddr::from(([127, 0, 0, 1], 4443)),
            mesh_public: None,
            public_ingest_url: None,
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8082)),
            public_http_url: None,
            webrtc_listen: SocketAddr::from(([127, 0, 0, 1], 8189)),
            webrtc_announce: Vec::new(),
            webrtc_remote_networks: Vec::new(),
            control_url: "http://127.0.0.1:8080".to_owned(),
        }
    }
}

impl Default for OriginSettings {
    fn default() -> Self {
        Self {
            id: "origin-1".to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            public_api_url: None,
            mesh_listen: SocketAddr::from(([127, 0, 0, 1], 4444)),
            mesh_public: None,
            control_url: "http://127.0.0.1:8080".to_owned(),
            extra_ca_file: None,
        }
    }
}

/// Flags (and their environment variables) that override the file.
#[derive(Debug, Clone, Default, Args)]
pub struct Overrides {
    /// Data directory.
    #[arg(long, env = "BUILDSTREAM_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Region of this node.
    #[arg(long, env = "BUILDSTREAM_REGION", global = true)]
    pub region: Option<String>,
    /// Node token shared by media nodes and the control plane.
    #[arg(
        long,
        env = "BUILDSTREAM_NODE_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub node_token: Option<String>,
    /// Access-token signing secret (32+ bytes).
    #[arg(
        long,
        env = "BUILDSTREAM_TOKEN_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub token_secret: Option<String>,
    /// Control plane HTTP address.
    #[arg(long, env = "BUILDSTREAM_HTTP_LISTEN", global = true, value_parser = listen_addr)]
    pub http_listen: Option<SocketAddr>,
    /// Directory of the built web app the control plane serves.
    #[arg(long, env = "BUILDSTREAM_WEB_DIR", global = true)]
    pub web_dir: Option<PathBuf>,
    /// Control plane base URL (edges and origins).
    #[arg(long, env = "BUILDSTREAM_CONTROL_URL", global = true)]
    pub control_url: Option<String>,
    /// Edge RTMP ingest address.
    #[arg(long, env = "BUILDSTREAM_RTMP_LISTEN", global = true, value_parser = listen_addr)]
    pub rtmp_listen: Option<SocketAddr>,
    /// Edge mesh (QUIC) address.
    #[arg(long, env = "BUILDSTREAM_MESH_LISTEN", global = true, value_parser = listen_addr)]
    pub mesh_listen: Option<SocketAddr>,
    /// Edge HTTP address (WHIP, WebRTC signaling).
    #[arg(long, env = "BUILDSTREAM_EDGE_HTTP_LISTEN", global = true, value_parser = listen_addr)]
    pub edge_http_listen: Option<SocketAddr>,
    /// Edge WebRTC UDP address.
    #[arg(long, env = "BUILDSTREAM_WEBRTC_LISTEN", global = true, value_parser = listen_addr)]
    pub webrtc_listen: Option<SocketAddr>,
    /// Remote networks WebRTC media is exchanged with, comma-separated.
    #[arg(
        long,
        env = "BUILDSTREAM_WEBRTC_REMOTE_NETWORKS",
        global = true,
        value_delimiter = ','
    )]
    pub webrtc_remote_networks: Option<Vec<String>>,
    /// Origin internal API address.
    #[arg(long, env = "BUILDSTREAM_ORIGIN_LISTEN", global = true, value_parser = listen_addr)]
    pub origin_listen: Option<SocketAddr>,
    /// Origin mesh (QUIC) address.
    #[arg(long, env = "BUILDSTREAM_ORIGIN_MESH_LISTEN", global = true, value_parser = listen_addr)]
    pub origin_mesh_listen: Option<SocketAddr>,
    /// Extra CA certificates (PEM) trusted for rtmps:// destinations.
    #[arg(long, env = "BUILDSTREAM_EXTRA_CA_FILE", global = true)]
    pub extra_ca_file: Option<PathBuf>,
    /// Accept destinations on loopback and private addresses (default: yes
    /// in dev, no otherwise).
    #[arg(long, env = "BUILDSTREAM_ALLOW_PRIVATE_DESTINATIONS", global = true)]
    pub allow_private_destinations: Option<bool>,
}

impl Settings {
    /// Reads `path` if given (it must exist), else defaults; then applies
    /// the overrides.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Self> {
        let mut settings = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config {}", path.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("parsing config {}", path.display()))?
            }
            None => Settings::default(),
        };
        settings.apply(overrides);
        Ok(settings)
    }

    fn apply(&mut self, o: &Overrides) {
        if let Some(v) = &o.data_dir {
            self.data_dir.clone_from(v);
        }
        if let Some(v) = &o.region {
            self.region.clone_from(v);
        }
        if o.node_token.is_some() {
            self.node_token.clone_from(&o.node_token);
        }
        if o.token_secret.is_some() {
            self.token_secret.clone_from(&o.token_secret);
        }
        if let Some(v) = o.http_listen {
            self.control.listen = v;
        }
        if let Some(v) = &o.web_dir {
            self.control.web_dir.clone_from(v);
        }
        if let Some(v) = &o.control_url {
            self.edge.control_url.clone_from(v);
            self.origin.control_url.clone_from(v);
        }
        if let Some(v) = o.rtmp_listen {
            self.edge.rtmp_listen = v;
        }
        if let Some(v) = o.mesh_listen {
            self.edge.mesh_listen = v;
        }
        if let Some(v) = o.edge_http_listen {
            self.edge.http_listen = v;
        }
        if let Some(v) = o.webrtc_listen {
            self.edge.webrtc_listen = v;
        }
        if let Some(v) = &o.webrtc_remote_networks {
            self.edge.webrtc_remote_networks.clone_from(v);
        }
        if let Some(v) = o.origin_listen {
            self.origin.listen = v;
        }
        if let Some(v) = o.origin_mesh_listen {
            self.origin.mesh_listen = v;
        }
        if o.extra_ca_file.is_some() {
            self.origin.extra_ca_file.clone_from(&o.extra_ca_file);
        }
        if o.allow_private_destinations.is_some() {
            self.allow_private_destinations = o.allow_private_destinations;
        }
    }

    /// The node token and token secret: configured ones, else those stored
    /// in the data directory, else new ones written there.
    pub fn secrets(&self) -> anyhow::Result<Secrets> {
        let path = self.data_dir.join("secrets.toml");
        let stored: Option<Secrets> = match std::fs::read_to_string(&path) {
            Ok(text) => {
                Some(toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?)
            }
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        let generated = stored.clone().unwrap_or_else(Secrets::generate);
        if stored.is_none() && (self.node_token.is_none() || self.token_secret.is_none()) {
            write_private(&path, &toml::to_string(&generated)?)?;
        }
        Ok(Secrets {
            node_token: self.node_token.clone().unwrap_or(generated.node_token),
            token_secret: self.token_secret.clone().unwrap_or(generated.token_secret),
        })
    }

    /// The base URL WebRTC clients reach this edge's HTTP at, which listens
    /// on `bound`.
    pub fn edge_http_url(&self, bound: SocketAddr) -> String {
        self.edge
            .public_http_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
    }

    /// The URL encoders publish to at this edge, whose ingest listens on
    /// `bound` (the configured address, or the one the OS gave for port 0).
    pub fn edge_ingest_url(&self, bound: SocketAddr) -> String {
        self.edge
            .public_ingest_url
            .clone()
            .unwrap_or_else(|| format!("rtmp://{bound}/live"))
    }
}

/// Secrets shared between the roles.
#[derive(Clone, Serialize, Deserialize)]
pub struct Secrets {
    /// Node token.
    pub node_token: String,
    /// Access-token signing secret.
    pub token_secret: String,
}

impl Secrets {
    fn generate() -> Self {
        Self {
            node_token: random_hex(32),
            token_secret: random_hex(32),
        }
    }
}

fn random_hex(bytes: usize) -> String {
    use rand::RngExt;
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// A listen address as `host:port`: an IP address, or a name such as
/// `localhost` that resolves to one (IPv4 preferred).
fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    use std::net::ToSocketAddrs as _;
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|err| format!("{text} is not host:port ({err})"))?
        .collect();
    addrs
        .iter()
        .find(|addr| addr.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{text} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_flags() {
        let settings: Settings =
            toml::from_str("data_dir = \"/tmp/bs\"\n[edge]\nrtmp_listen = \"0.0.0.0:1936\"\n")
                .unwrap();
        assert_eq!(settings.edge.rtmp_listen.port(), 1936);
        assert_eq!(settings.control.listen.port(), 8080);
        let mut settings = settings;
        settings.apply(&Overrides {
            rtmp_listen: Some("127.0.0.1:2000".parse().unwrap()),
            ..Overrides::default()
        });
        assert_eq!(settings.edge.rtmp_listen.port(), 2000);
        assert_eq!(settings.data_dir, PathBuf::from("/tmp/bs"));
    }

    #[test]
    fn example_file_parses_to_the_defaults() {
        let example: Settings =
            toml::from_str(include_str!("../buildstream.example.toml")).unwrap();
        let defaults = Settings::default();
        assert_eq!(example.control.listen, defaults.control.listen);
        assert_eq!(example.edge.rtmp_listen, defaults.edge.rtmp_listen);
        assert_eq!(example.edge.mesh_listen, defaults.edge.mesh_listen);
        assert_eq!(example.origin.listen, defaults.origin.listen);
        assert_eq!(example.data_dir, defaults.data_dir);
    }

    #[test]
    fn listen_addresses_take_names() {
        assert_eq!(
            listen_addr("localhost:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(listen_addr("[::1]:9").unwrap(), "[::1]:9".parse().unwrap());
        assert!(listen_addr("localhost").is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Settings>("datadir = \"x\"").is_err());
    }
}
