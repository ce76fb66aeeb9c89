//! Runs the load harness's edge forwarding measurement against control,
//! edge and origin as separate processes, so that the edge's CPU time is
//! its own. Ignored by default: it measures, it does not check.
//!
//! `cargo test --test edge_load -- --ignored --nocapture`

mod support;

use std::path::Path;
use std::process::Stdio;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run it on a quiet machine"]
async fn edge_cpu_per_forwarded_stream() {
    init();
    let certs = TempDir::new("load-ca");
    let ca = TestCa::create(certs.path());
    let deployment = Deployment::three_processes(&ca).await;
    let api = Api::sign_up(&deployment.api).await;
    let studio = api.create_studio("Load").await;
    // Processes are started control, edge, origin.
    let edge_pid = deployment.procs[1].pid().to_string();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = tokio::process::Command::new("node")
        .arg(root.join("loadtest/edge_forwarding.mjs"))
        .args([&deployment.api, &api.token, &studio, &edge_pid, "4", "20"])
        .current_dir(root)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("node runs the harness");
    print!("{}", String::from_utf8_lossy(&output.stdout));
    assert!(output.status.success());
}
