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
    /// Secrets tokens were signed with before `token_secret` replaced them,
    /// still accepted (not used to sign) until they are taken out.
    pub previous_token_secrets: Vec<String>,
    /// Shared by the gateway and the services: with it the gateway vouches
    /// for the user of a request. Generated into the data directory when
    /// unset.
    pub service_token: Option<String>,
    /// Control plane settings.
    /// Whether destinations on loopback, private or other internal
    /// addresses are accepted. Unset: yes in `dev` (a studio on this
    /// machine), no for `control` and `origin` (a server must not be made
    /// to connect inward).
    pub allow_private_destinations: Option<bool>,
    pub control: ControlSettings,
    /// Gateway settings.
    pub gateway: GatewaySettings,
    /// Edge settings.
    pub edge: EdgeSettings,
    /// Origin settings.
    pub origin: OriginSettings,
}

/// `[control]`: the services behind the gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlSettings {
    /// Ingest URL handed to sources when no edge has registered.
    pub default_ingest_url: String,
    /// Edge HTTP base (WHIP, WebRTC) handed out when no edge has registered.
    pub default_edge_http_url: String,
    /// Redis for state every instance shares (`redis://host:6379/0`); an
    /// in-memory cache, good for one instance of each service, when unset.
    pub redis_url: Option<String>,
    /// Prefix of every key this deployment keeps in Redis, so that several
    /// can share one server.
    pub redis_namespace: String,
    /// RabbitMQ for events between services
    /// (`amqp://user:password@host:5672/%2f`); an in-process bus, good when
    /// every service runs in one process, when unset.
    pub amqp_url: Option<String>,
    /// Elasticsearch for studio search, shared by every studio instance
    /// (`http://user:password@host:9200`); an index in each studio
    /// process's memory, rebuilt at start, when unset.
    pub elasticsearch_url: Option<String>,
    /// The Elasticsearch index of studios.
    pub elasticsearch_index: String,
    /// The user service.
    pub user: ServiceSettings,
    /// The studio service.
    pub studio: ServiceSettings,
    /// Milliseconds a service running alone keeps serving after SIGTERM,
    /// no longer ready, so that gateways stop sending to it before it
    /// closes its connections: more than the gateways' health-check
    /// interval.
    pub drain_ms: u64,
}

/// `[control.user]`, `[control.studio]`: one service.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceSettings {
    /// HTTP address when it runs alone (`buildstream control <service>`):
    /// 127.0.0.1:8091 for users, :8092 for studios when unset.
    pub listen: Option<SocketAddr>,
    /// Its database: `mysql://user:password@host/db`, or SQLite
    /// (`sqlite:path`); `<data_dir>/<service>.db` when unset.
    pub database_url: Option<String>,
}

/// `[gateway]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// The public HTTP address: API and web app.
    pub listen: SocketAddr,
    /// The built web app, served at `/`.
    pub web_dir: PathBuf,
    /// Name server for SRV lookups (`10.96.0.10:53`); the system's when
    /// unset.
    pub name_server: Option<SocketAddr>,
    /// Milliseconds between two health checks of an instance.
    pub check_interval_ms: u64,
    /// Failures in a row that open an instance's breaker.
    pub breaker_failures: u32,
    /// Milliseconds an open breaker waits before letting a probe through.
    pub breaker_open_ms: u64,
    /// API requests one client (a user, else an address) may make per
    /// minute.
    pub api_per_minute: u64,
    /// Password sign-ins one address may try per minute.
    pub sign_in_per_minute: u64,
    /// Accounts one address may register per hour.
    pub sign_up_per_hour: u64,
    /// Where user service instances are.
    pub user: UpstreamSettings,
    /// Where studio service instances are.
    pub studio: UpstreamSettings,
}

/// `[gateway.user]`, `[gateway.studio]`: where a service's instances are.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamSettings {
    /// DNS SRV name listing the instances
    /// (`_http._tcp.studio.buildstream.svc.cluster.local`).
    pub srv: Option<String>,
    /// Instances' base URLs, used when there is no SRV name or it gives
    /// nothing.
    pub instances: Vec<String>,
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
            previous_token_secrets: Vec::new(),
            service_token: None,
            allow_private_destinations: None,
            control: ControlSettings::default(),
            gateway: GatewaySettings::default(),
            edge: EdgeSettings::default(),
            origin: OriginSettings::default(),
        }
    }
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            default_ingest_url: "rtmp://127.0.0.1:1935/live".to_owned(),
            default_edge_http_url: "http://127.0.0.1:8082".to_owned(),
            redis_url: None,
            redis_namespace: "buildstream:".to_owned(),
            amqp_url: None,
            elasticsearch_url: None,
            elasticsearch_index: "buildstream-studios".to_owned(),
            drain_ms: 5000,
            user: ServiceSettings::default(),
            studio: ServiceSettings::default(),
        }
    }
}

impl ControlSettings {
    /// Where the user service listens when it runs alone.
    pub fn user_listen(&self) -> SocketAddr {
        self.user
            .listen
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8091)))
    }

    /// Where the studio service listens when it runs alone.
    pub fn studio_listen(&self) -> SocketAddr {
        self.studio
            .listen
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8092)))
    }
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            web_dir: PathBuf::from("web/dist"),
            name_server: None,
            check_interval_ms: 2000,
            breaker_failures: 5,
            breaker_open_ms: 5000,
            api_per_minute: 1200,
            sign_in_per_minute: 10,
            sign_up_per_hour: 20,
            user: UpstreamSettings {
                srv: None,
                instances: vec!["http://127.0.0.1:8091".to_owned()],
            },
            studio: UpstreamSettings {
                srv: None,
                instances: vec!["http://127.0.0.1:8092".to_owned()],
            },
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
    /// Earlier token secrets still accepted, comma-separated.
    #[arg(
        long,
        env = "BUILDSTREAM_PREVIOUS_TOKEN_SECRETS",
        global = true,
        hide_env_values = true,
        value_delimiter = ','
    )]
    pub previous_token_secrets: Option<Vec<String>>,
    /// Token with which the gateway vouches for users to the services.
    #[arg(
        long,
        env = "BUILDSTREAM_SERVICE_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub service_token: Option<String>,
    /// Gateway (public API and web app) HTTP address.
    #[arg(long, env = "BUILDSTREAM_HTTP_LISTEN", global = true, value_parser = listen_addr)]
    pub http_listen: Option<SocketAddr>,
    /// Directory of the built web app the gateway serves.
    #[arg(long, env = "BUILDSTREAM_WEB_DIR", global = true)]
    pub web_dir: Option<PathBuf>,
    /// Redis URL for state the services' instances share.
    #[arg(long, env = "BUILDSTREAM_REDIS_URL", global = true)]
    pub redis_url: Option<String>,
    /// RabbitMQ URL for events between services.
    #[arg(
        long,
        env = "BUILDSTREAM_AMQP_URL",
        global = true,
        hide_env_values = true
    )]
    pub amqp_url: Option<String>,
    /// Elasticsearch URL for studio search.
    #[arg(
        long,
        env = "BUILDSTREAM_ELASTICSEARCH_URL",
        global = true,
        hide_env_values = true
    )]
    pub elasticsearch_url: Option<String>,
    /// Prefix of this deployment's Redis keys.
    #[arg(long, env = "BUILDSTREAM_REDIS_NAMESPACE", global = true)]
    pub redis_namespace: Option<String>,
    /// User service HTTP address, when it runs alone.
    #[arg(long, env = "BUILDSTREAM_USER_LISTEN", global = true, value_parser = listen_addr)]
    pub user_listen: Option<SocketAddr>,
    /// Studio service HTTP address, when it runs alone.
    #[arg(long, env = "BUILDSTREAM_STUDIO_LISTEN", global = true, value_parser = listen_addr)]
    pub studio_listen: Option<SocketAddr>,
    /// User service database URL (mysql://… or sqlite:…).
    #[arg(
        long,
        env = "BUILDSTREAM_USER_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub user_database_url: Option<String>,
    /// Studio service database URL (mysql://… or sqlite:…).
    #[arg(
        long,
        env = "BUILDSTREAM_STUDIO_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub studio_database_url: Option<String>,
    /// User service instances for the gateway, comma-separated base URLs.
    #[arg(
        long,
        env = "BUILDSTREAM_USER_INSTANCES",
        global = true,
        value_delimiter = ','
    )]
    pub user_instances: Option<Vec<String>>,
    /// Studio service instances for the gateway, comma-separated base URLs.
    #[arg(
        long,
        env = "BUILDSTREAM_STUDIO_INSTANCES",
        global = true,
        value_delimiter = ','
    )]
    pub studio_instances: Option<Vec<String>>,
    /// DNS SRV name of the user service's instances.
    #[arg(long, env = "BUILDSTREAM_USER_SRV", global = true)]
    pub user_srv: Option<String>,
    /// DNS SRV name of the studio service's instances.
    #[arg(long, env = "BUILDSTREAM_STUDIO_SRV", global = true)]
    pub studio_srv: Option<String>,
    /// Milliseconds between the gateway's health checks of an instance.
    #[arg(long, env = "BUILDSTREAM_CHECK_INTERVAL_MS", global = true)]
    pub check_interval_ms: Option<u64>,
    /// Milliseconds a service keeps serving, not ready, after SIGTERM.
    #[arg(long, env = "BUILDSTREAM_DRAIN_MS", global = true)]
    pub drain_ms: Option<u64>,
    /// API requests one client may make per minute at the gateway.
    #[arg(long, env = "BUILDSTREAM_API_PER_MINUTE", global = true)]
    pub api_per_minute: Option<u64>,
    /// Name server for SRV lookups (`host:port`); the system's when unset.
    #[arg(long, env = "BUILDSTREAM_NAME_SERVER", global = true)]
    pub name_server: Option<SocketAddr>,
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
        if o.service_token.is_some() {
            self.service_token.clone_from(&o.service_token);
        }
        if let Some(v) = &o.previous_token_secrets {
            self.previous_token_secrets.clone_from(v);
        }
        if let Some(v) = o.http_listen {
            self.gateway.listen = v;
        }
        if let Some(v) = &o.web_dir {
            self.gateway.web_dir.clone_from(v);
        }
        if o.redis_url.is_some() {
            self.control.redis_url.clone_from(&o.redis_url);
        }
        if let Some(v) = &o.redis_namespace {
            self.control.redis_namespace.clone_from(v);
        }
        if o.amqp_url.is_some() {
            self.control.amqp_url.clone_from(&o.amqp_url);
        }
        if o.elasticsearch_url.is_some() {
            self.control
                .elasticsearch_url
                .clone_from(&o.elasticsearch_url);
        }
        if o.user_listen.is_some() {
            self.control.user.listen = o.user_listen;
        }
        if o.studio_listen.is_some() {
            self.control.studio.listen = o.studio_listen;
        }
        if o.user_database_url.is_some() {
            self.control
                .user
                .database_url
                .clone_from(&o.user_database_url);
        }
        if o.studio_database_url.is_some() {
            self.control
                .studio
                .database_url
                .clone_from(&o.studio_database_url);
        }
        if let Some(v) = &o.user_instances {
            self.gateway.user.instances.clone_from(v);
        }
        if let Some(v) = &o.studio_instances {
            self.gateway.studio.instances.clone_from(v);
        }
        if o.user_srv.is_some() {
            self.gateway.user.srv.clone_from(&o.user_srv);
        }
        if o.studio_srv.is_some() {
            self.gateway.studio.srv.clone_from(&o.studio_srv);
        }
        if o.name_server.is_some() {
            self.gateway.name_server = o.name_server;
        }
        if let Some(v) = o.drain_ms {
            self.control.drain_ms = v;
        }
        if let Some(v) = o.check_interval_ms {
            self.gateway.check_interval_ms = v;
        }
        if let Some(v) = o.api_per_minute {
            self.gateway.api_per_minute = v;
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

    /// The node token, token secret and service token: configured ones, else those stored
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
        let all_configured = self.node_token.is_some()
            && self.token_secret.is_some()
            && self.service_token.is_some();
        let mut generated = stored.clone().unwrap_or_else(Secrets::generate);
        // A data directory from before the service token gets one added.
        let incomplete = generated.service_token.is_empty();
        if incomplete {
            generated.service_token = random_hex(32);
        }
        if !all_configured && (stored.is_none() || incomplete) {
            if stored.is_some() {
                std::fs::remove_file(&path)
                    .with_context(|| format!("replacing {}", path.display()))?;
            }
            write_private(&path, &toml::to_string(&generated)?)?;
        }
        Ok(Secrets {
            previous_token_secrets: self.previous_token_secrets.clone(),
            node_token: self.node_token.clone().unwrap_or(generated.node_token),
            token_secret: self.token_secret.clone().unwrap_or(generated.token_secret),
            service_token: self
                .service_token
                .clone()
                .unwrap_or(generated.service_token),
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
    /// The gateway's token to the services.
    #[serde(default)]
    pub service_token: String,
    /// Earlier token secrets still accepted; configured, never stored.
    #[serde(skip)]
    pub previous_token_secrets: Vec<String>,
}

impl Secrets {
    /// The keys that sign and check tokens: the token secret, and the
    /// previous ones still accepted.
    pub fn token_keys(&self) -> anyhow::Result<buildstream_service::TokenKeys> {
        let previous: Vec<&[u8]> = self
            .previous_token_secrets
            .iter()
            .map(|s| s.as_bytes())
            .filter(|s| !s.is_empty())
            .collect();
        Ok(
            buildstream_service::TokenKeys::from_secret(self.token_secret.as_bytes())?
                .accepting_previous(&previous)?,
        )
    }

    fn generate() -> Self {
        Self {
            node_token: random_hex(32),
            token_secret: random_hex(32),
            service_token: random_hex(32),
            previous_token_secrets: Vec::new(),
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
        assert_eq!(settings.gateway.listen.port(), 8080);
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
        assert_eq!(example.gateway.listen, defaults.gateway.listen);
        assert_eq!(
            example.gateway.studio.instances,
            defaults.gateway.studio.instances
        );
        assert_eq!(
            example.control.user_listen(),
            defaults.control.user_listen()
        );
        assert_eq!(
            example.control.studio_listen(),
            defaults.control.studio_listen()
        );
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
    fn the_compose_nodes_configs_parse_with_distinct_ids() {
        let edge_eu: Settings =
            toml::from_str(include_str!("../deploy/compose/edge-eu.toml")).unwrap();
        let edge_us: Settings =
            toml::from_str(include_str!("../deploy/compose/edge-us.toml")).unwrap();
        let origin: Settings =
            toml::from_str(include_str!("../deploy/compose/origin.toml")).unwrap();
        assert_ne!(edge_eu.edge.id, edge_us.edge.id);
        assert_ne!(edge_eu.region, edge_us.region);
        assert_eq!(origin.origin.mesh_public.as_deref(), Some("origin:4444"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Settings>("datadir = \"x\"").is_err());
    }
}
