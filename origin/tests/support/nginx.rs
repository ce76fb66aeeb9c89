//! nginx with the RTMP module, recording every stream it receives.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::{free_port, wait_until, TempDir};

pub struct Nginx {
    dir: TempDir,
    port: u16,
    child: Option<Child>,
}

impl Nginx {
    /// Starts nginx-rtmp on a free loopback port.
    pub async fn start() -> Self {
        let dir = TempDir::new("nginx");
        let port = free_port();
        let record = dir.path().join("rec");
        std::fs::create_dir_all(&record).expect("record dir");
        let conf = format!(
            "load_module /usr/share/nginx/modules/ngx_rtmp_module.so;\n\
             daemon off;\n\
             master_process off;\n\
             error_log stderr warn;\n\
             pid {pid};\n\
             events {{}}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
               application live {{ live on;\n\
                 record all; record_path {record}; record_unique off; }} }} }}\n",
            pid = dir.path().join("nginx.pid").display(),
            record = record.display(),
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("nginx.conf");
        let mut nginx = Self {
            dir,
            port,
            child: None,
        };
        nginx.spawn().await;
        nginx
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("nginx.log"))
            .expect("nginx log");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(self.dir.path())
            .arg("-e")
            .arg("stderr")
            .arg("-c")
            .arg(self.dir.path().join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        self.child = Some(child);
        let port = self.port;
        let mut up = false;
        for _ in 0..50 {
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(up, "nginx did not listen on {port}: {}", self.log());
    }

    /// `rtmp://127.0.0.1:{port}/live`
    pub fn url(&self) -> String {
        format!("rtmp://127.0.0.1:{}/live", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the stream published with `key` is recorded.
    pub fn recording(&self, key: &str) -> PathBuf {
        self.dir.path().join("rec").join(format!("{key}.flv"))
    }

    /// Bytes recorded so far for `key`.
    pub fn recorded_bytes(&self, key: &str) -> u64 {
        std::fs::metadata(self.recording(key)).map_or(0, |m| m.len())
    }

    /// Waits until the recording of `key` holds at least `bytes`.
    pub async fn wait_for_recording(&self, key: &str, bytes: u64, timeout: Duration) -> bool {
        wait_until(timeout, || self.recorded_bytes(key) >= bytes).await
    }

    /// Kills nginx abruptly, as a crash would.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts nginx again on the same port.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("nginx.log")).unwrap_or_default()
    }
}
