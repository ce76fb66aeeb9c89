//! A deployment under test: `buildstream dev`, or control, edge and origin
//! as three processes, on free loopback ports, with helpers that watch it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;

/// The deployment's token signing secret, so that tests can forge tokens
/// the way an attacker who had it could (expired ones, say).
pub const TOKEN_SECRET: &str = "test-token-secret-0123456789abcdef0123";

pub const NODE_TOKEN: &str = "test-node-token-0123456789";

/// Free loopback ports for every listener of a deployment.
struct Ports {
    http: u16,
    ingest: u16,
    edge_http: u16,
    origin: u16,
    mesh: u16,
    origin_mesh: u16,
    webrtc: u16,
}

impl Ports {
    fn pick() -> Self {
        Self {
            http: free_tcp_port(),
            ingest: free_tcp_port(),
            edge_http: free_tcp_port(),
            origin: free_tcp_port(),
            mesh: free_udp_port(),
            origin_mesh: free_udp_port(),
            webrtc: free_udp_port(),
        }
    }

    /// Points every role's listeners at these ports.
    fn apply(&self, command: &mut Command) {
        for (variable, port) in [
            ("BUILDSTREAM_HTTP_LISTEN", self.http),
            ("BUILDSTREAM_RTMP_LISTEN", self.ingest),
            ("BUILDSTREAM_EDGE_HTTP_LISTEN", self.edge_http),
            ("BUILDSTREAM_ORIGIN_LISTEN", self.origin),
            ("BUILDSTREAM_MESH_LISTEN", self.mesh),
            ("BUILDSTREAM_ORIGIN_MESH_LISTEN", self.origin_mesh),
            ("BUILDSTREAM_WEBRTC_LISTEN", self.webrtc),
        ] {
            command.env(variable, format!("127.0.0.1:{port}"));
        }
    }
}

/// Ports and files of one deployment under test.
pub struct Deployment {
    pub api: String,
    /// The origin's internal API.
    pub origin: String,
    pub ingest_port: u16,
    /// The edge's HTTP base (WHIP, signaling).
    pub edge_http: String,
    /// Whether the control plane's events go through the machine's
    /// RabbitMQ (else they stay inside its process).
    pub amqp_events: bool,
    pub procs: Vec<Proc>,
    _data: TempDir,
}

fn common_env(command: &mut Command, data: &Path, ca: &TestCa) {
    command
        .env("BUILDSTREAM_DATA_DIR", data)
        .env("BUILDSTREAM_EXTRA_CA_FILE", &ca.ca_cert)
        .env("BUILDSTREAM_LOG", "info,moq_transport=error")
        .env("BUILDSTREAM_NODE_TOKEN", NODE_TOKEN)
        .env(
            "BUILDSTREAM_WEB_DIR",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("web/dist"),
        )
        // WebRTC peers in tests are on loopback; anything else is ignored.
        .env("BUILDSTREAM_WEBRTC_REMOTE_NETWORKS", "127.0.0.0/8,::1")
        // The sinks are nginx servers on loopback.
        .env("BUILDSTREAM_ALLOW_PRIVATE_DESTINATIONS", "true")
        .env("BUILDSTREAM_TOKEN_SECRET", TOKEN_SECRET)
        .stdin(Stdio::null());
    if std::env::var_os("BUILDSTREAM_TEST_LOGS").is_none() {
        command.stdout(Stdio::null()).stderr(Stdio::null());
    }
}

impl Deployment {
    /// `buildstream dev`: everything in one process.
    pub async fn dev(ca: &TestCa) -> Self {
        let data = TempDir::new("dev");
        let ports = Ports::pick();
        let mut command = Command::new(buildstream_bin());
        command.arg("dev");
        ports.apply(&mut command);
        common_env(&mut command, data.path(), ca);
        let procs = vec![Proc::spawn("buildstream dev", &mut command)];
        Self::ready(ports, procs, data, false).await
    }

    /// `buildstream control`, `edge` and `origin` as three processes.
    pub async fn three_processes(ca: &TestCa) -> Self {
        let data = TempDir::new("roles");
        let ports = Ports::pick();
        let control_url = format!("http://127.0.0.1:{}", ports.http);
        let mut procs = Vec::new();
        for role in ["control", "edge", "origin"] {
            let role_data = data.path().join(role);
            let mut command = Command::new(buildstream_bin());
            command
                .arg(role)
                .env("BUILDSTREAM_CONTROL_URL", &control_url);
            if role == "control" {
                // Events through the machine's RabbitMQ, where tests can
                // read them.
                command.env(
                    "BUILDSTREAM_AMQP_URL",
                    buildstream_backend::testing::amqp_url(),
                );
            }
            ports.apply(&mut command);
            common_env(&mut command, &role_data, ca);
            procs.push(Proc::spawn(&format!("buildstream {role}"), &mut command));
        }
        Self::ready(ports, procs, data, true).await
    }

    async fn ready(ports: Ports, procs: Vec<Proc>, data: TempDir, amqp_events: bool) -> Self {
        let Ports {
            http,
            origin: origin_port,
            ingest: ingest_port,
            edge_http,
            ..
        } = ports;
        let api = format!("http://127.0.0.1:{http}");
        // Generous: on a loaded 2-core CI machine start-up can take a while.
        wait_http_ok(&format!("{api}/healthz"), Duration::from_secs(90)).await;
        // The media nodes are usable once they have registered.
        for role in ["edge", "origin"] {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let nodes = registered(&api, role).await;
                if nodes.as_array().is_some_and(|n| !n.is_empty()) {
                    break;
                }
                assert!(Instant::now() < deadline, "no {role} registered");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Self {
            api,
            origin: format!("http://127.0.0.1:{origin_port}"),
            ingest_port,
            edge_http: format!("http://127.0.0.1:{edge_http}"),
            amqp_events,
            procs,
            _data: data,
        }
    }

    /// CPU seconds used so far by the deployment's processes.
    pub fn cpu_seconds(&self) -> f64 {
        self.procs
            .iter()
            .map(|p| process_cpu_seconds(p.pid()))
            .sum()
    }
}

pub fn process_cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start at ")".
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ticks / 100.0
}

pub fn peak_memory_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?.to_owned();
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

pub fn recorded_seconds(path: &Path) -> f64 {
    ffprobe(path).map(|p| p.duration).unwrap_or(0.0)
}

pub fn destination<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["destinations"]
        .as_array()
        .and_then(|all| all.iter().find(|d| d["id"] == id))
        .unwrap_or(&Value::Null)
}

pub async fn wait_status(
    api: &Api,
    studio: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = api
            .ok("GET", &format!("/api/v1/studios/{studio}/broadcast"), None)
            .await;
        if check(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The nodes of `role` registered at the control plane at `api`.
pub async fn registered(api: &str, role: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{api}/internal/v1/nodes?role={role}"))
        .bearer_auth(NODE_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
