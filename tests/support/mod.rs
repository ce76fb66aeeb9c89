//! Real peers for end-to-end tests: the `buildstream` binary, nginx-rtmp
//! destinations (optionally behind TLS), ffmpeg publishers and ffprobe.
//! Everything listens on 127.0.0.1 on ports picked here, and is killed when
//! its handle drops.

#![allow(dead_code)]

mod deployment;
pub mod dns;
pub use deployment::*;

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Process-wide set-up every test calls first: the TLS provider the HTTP
/// client uses.
pub fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A TCP port free right now on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    // Binding port 0 on loopback only fails when the system is out of ports.
    let listener = TcpListener::bind("127.0.0.1:0").expect("free tcp port");
    listener.local_addr().unwrap().port()
}

/// A UDP port free right now on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("free udp port");
    socket.local_addr().unwrap().port()
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "buildstream-{tag}-{}-{}",
            std::process::id(),
            rand_suffix()
        ));
        std::fs::create_dir_all(&path).unwrap();
        // nginx workers may run as another user; let them write recordings.
        let _ = Command::new("chmod").arg("0777").arg(&path).status();
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("BUILDSTREAM_KEEP_TEST_FILES").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

/// A child process killed on drop.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
}

impl Proc {
    pub fn spawn(name: &str, command: &mut Command) -> Self {
        let child = command
            .spawn()
            .unwrap_or_else(|err| panic!("starting {name}: {err}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGTERM, without waiting.
    pub fn terminate(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
    }

    /// SIGTERM, then SIGKILL after a grace period.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL: the process vanishes without closing anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `check` every 200 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The body of `GET url`, which must answer.
pub async fn get_text(url: &str) -> String {
    reqwest::get(url)
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"))
        .text()
        .await
        .unwrap()
}

/// Like [`wait_for`], for checks that are futures.
pub async fn wait_for_async<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A certificate authority and a server certificate for 127.0.0.1, made
/// with the openssl command.
pub struct TestCa {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestCa {
    pub fn create(dir: &Path) -> Self {
        let run = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("running openssl");
            assert!(status.success(), "openssl {args:?}");
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=BuildStream Test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        Self {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        }
    }
}

/// nginx with the RTMP module recording everything published to
/// `rtmp://127.0.0.1:{rtmp_port}/live/{key}` into `{dir}/{key}.flv`;
/// with TLS, also `rtmps://127.0.0.1:{tls_port}/live` through nginx's
/// stream module.
pub struct Nginx {
    pub dir: TempDir,
    pub rtmp_port: u16,
    pub tls_port: Option<u16>,
    proc: Option<Proc>,
}

impl Nginx {
    pub fn start(tag: &str, tls: Option<&TestCa>) -> Self {
        let dir = TempDir::new(tag);
        let rtmp_port = free_tcp_port();
        let tls_port = tls.map(|_| free_tcp_port());
        let (stream_module, stream_block) = match (tls, tls_port) {
            (Some(ca), Some(port)) => (
                "load_module /usr/share/nginx/modules/ngx_stream_module.so;\n".to_owned(),
                format!(
                    "stream {{ server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {}; \
                     ssl_certificate_key {}; proxy_pass 127.0.0.1:{rtmp_port}; }} }}\n",
                    ca.server_cert.display(),
                    ca.server_key.display()
                ),
            ),
            _ => (String::new(), String::new()),
        };
        let conf = format!(
            "load_module /usr/share/nginx/modules/ngx_rtmp_module.so;\n{stream_module}\
             daemon off;\nmaster_process on;\nworker_processes 1;\nuser root root;\n\
             pid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{rtmp_port}; chunk_size 4096;\n\
               application live {{ live on; record all; record_path {dir}; record_unique off; record_append on; }} }} }}\n\
             {stream_block}",
            dir = dir.path().display(),
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut nginx = Self {
            dir,
            rtmp_port,
            tls_port,
            proc: None,
        };
        nginx.resume();
        nginx
    }

    /// Starts nginx again after [`Nginx::stop`], on the same ports.
    pub fn resume(&mut self) {
        let proc = Proc::spawn(
            "nginx",
            Command::new("nginx")
                .arg("-p")
                .arg(self.dir.path())
                .arg("-c")
                .arg(self.dir.path().join("nginx.conf"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        self.proc = Some(proc);
        let port = self.rtmp_port;
        wait_for("nginx to listen", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
    }

    pub fn stop(&mut self) {
        if let Some(mut proc) = self.proc.take() {
            proc.stop();
        }
    }

    pub fn rtmp_url(&self) -> String {
        format!("rtmp://127.0.0.1:{}/live", self.rtmp_port)
    }

    pub fn rtmps_url(&self) -> String {
        format!(
            "rtmps://127.0.0.1:{}/live",
            self.tls_port.expect("nginx without TLS")
        )
    }

    pub fn recording(&self, key: &str) -> PathBuf {
        self.dir.path().join(format!("{key}.flv"))
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

/// ffmpeg publishing a solid-colour 640x360@30 picture with a tone, H.264
/// + AAC over RTMP, in real time.
pub fn publish_color(url: &str, color: &str, extra: &[&str]) -> Proc {
    Proc::spawn(
        "ffmpeg",
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args([
                "-f",
                "lavfi",
                "-i",
                &format!("color=c={color}:size=640x360:rate=30"),
            ])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
            .args([
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-tune",
                "zerolatency",
            ])
            .args([
                "-g", "30", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k",
            ])
            .args(extra)
            .args(["-f", "flv", url])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// What ffprobe says about a recording.
#[derive(Debug, Clone)]
pub struct Probe {
    pub video_codec: String,
    pub width: u64,
    pub height: u64,
    pub frame_rate: f64,
    pub audio_codec: String,
    pub duration: f64,
}

pub fn ffprobe(path: &Path) -> Option<Probe> {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .ok()?;
    let info: Value = serde_json::from_slice(&output.stdout).ok()?;
    let streams = info["streams"].as_array()?;
    let video = streams.iter().find(|s| s["codec_type"] == "video")?;
    let audio = streams.iter().find(|s| s["codec_type"] == "audio")?;
    let rate = video["avg_frame_rate"].as_str().unwrap_or("0/1");
    let (num, den) = rate.split_once('/').unwrap_or(("0", "1"));
    let den: f64 = den.parse().unwrap_or(1.0);
    Some(Probe {
        video_codec: video["codec_name"].as_str()?.to_owned(),
        width: video["width"].as_u64()?,
        height: video["height"].as_u64()?,
        frame_rate: num.parse::<f64>().unwrap_or(0.0) / den.max(1.0),
        audio_codec: audio["codec_name"].as_str()?.to_owned(),
        duration: info["format"]["duration"].as_str()?.parse().ok()?,
    })
}

/// One decoded frame as RGB, `seconds_from_end` before the end.
pub struct RgbFrame {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl RgbFrame {
    pub fn grab(path: &Path, seconds_from_end: f64) -> Option<Self> {
        let probe = ffprobe(path)?;
        let (width, height) = (probe.width as usize, probe.height as usize);
        let size = width * height * 3;
        // A seek into a recording that is still growing lands by estimate,
        // maybe after the last keyframe; decode a few seconds more than
        // asked at four frames a second and pick the frame wanted from the
        // end of what decoded.
        const RATE: f64 = 4.0;
        let output = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error"])
            .args(["-sseof", &format!("-{}", seconds_from_end + 8.0)])
            .arg("-i")
            .arg(path)
            .args(["-an", "-vf", &format!("fps={RATE}")])
            .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
            .output()
            .ok()?;
        let frames = output.stdout.len() / size;
        let back = (seconds_from_end * RATE).round() as usize;
        let index = frames.checked_sub(1 + back.min(frames.saturating_sub(1)))?;
        Some(Self {
            width,
            height,
            pixels: output.stdout[index * size..(index + 1) * size].to_vec(),
        })
    }

    /// Mean colour of a square of `size` pixels centred on (x, y), as a
    /// fraction of the width and height.
    pub fn mean(&self, fx: f64, fy: f64, size: usize) -> [u8; 3] {
        let cx = (fx * self.width as f64) as usize;
        let cy = (fy * self.height as f64) as usize;
        let mut sum = [0u64; 3];
        let mut n = 0u64;
        for y in cy.saturating_sub(size / 2)..(cy + size / 2).min(self.height) {
            for x in cx.saturating_sub(size / 2)..(cx + size / 2).min(self.width) {
                let i = (y * self.width + x) * 3;
                for (total, value) in sum.iter_mut().zip(&self.pixels[i..i + 3]) {
                    *total += u64::from(*value);
                }
                n += 1;
            }
        }
        let n = n.max(1);
        [(sum[0] / n) as u8, (sum[1] / n) as u8, (sum[2] / n) as u8]
    }
}

/// Whether `rgb` is clearly the named primary colour.
pub fn looks(rgb: [u8; 3], color: &str) -> bool {
    let [r, g, b] = rgb.map(i32::from);
    match color {
        "red" => r > 150 && g < 90 && b < 90,
        "blue" => b > 150 && r < 90 && g < 90,
        "green" => g > 100 && r < 90 && b < 90,
        _ => false,
    }
}

/// The HTTP API as a user sees it.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
    pub refresh_token: String,
}

impl Api {
    /// Registers a new user and signs in.
    pub async fn sign_up(base: &str) -> Self {
        let http = reqwest::Client::new();
        let email = format!("host{}@example.com", rand_suffix());
        let response = http
            .post(format!("{base}/api/v1/users"))
            .json(&json!({"email": email, "password": "correct horse battery", "display_name": "Host"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
        let tokens: Value = http
            .post(format!("{base}/api/v1/sessions"))
            .json(&json!({"email": email, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Self {
            base: base.to_owned(),
            http,
            token: tokens["access_token"].as_str().unwrap().to_owned(),
            refresh_token: tokens["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Creates a studio; returns its id.
    pub async fn create_studio(&self, name: &str) -> String {
        self.ok("POST", "/api/v1/studios", Some(json!({ "name": name })))
            .await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self.call(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {value}"
        );
        value
    }
}

/// Path of the binary under test.
pub fn buildstream_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_buildstream"))
}

/// Waits until `url` answers 200.
pub async fn wait_http_ok(url: &str, timeout: Duration) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(response) = http.get(url).send().await {
            if response.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting for {url}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
