//! A measurement, not a check: CPU used by the origin for a two-source
//! 720p30 composite sent to three destinations. Run it on purpose:
//!
//! ```text
//! cargo test -p buildstream-origin --release --test cpu -- --ignored --nocapture
//! ```
//!
//! Only this process is counted (compositor, encoders, senders); the ffmpeg
//! sources and nginx run in their own processes.

mod support;

use std::time::{Duration, Instant};

use buildstream_mesh::Tracks;
use buildstream_origin::{BroadcastSpec, OriginConfig};
use serde_json::json;
use support::nginx::Nginx;
use support::source::TestSource;

/// User plus system CPU time of this process, from /proc/self/stat.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name, which is in parentheses and may hold
    // spaces: utime and stime are fields 14 and 15 overall.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(100);
    Duration::from_millis(ticks * 1000 / per_second)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a one-minute measurement, run on demand"]
async fn cpu_of_a_two_source_720p30_composite_with_three_destinations() {
    let _serial = support::serial().await;
    let nginx = Nginx::start().await;
    let tracks = Tracks::new();
    let alice = TestSource::start_moving(&tracks, "cpu", "alice");
    let bob = TestSource::start(&tracks, "cpu", "bob", "blue");
    let broadcasts = support::origin(&tracks, OriginConfig::default());
    let studio = support::studio("cpu");
    let spec: BroadcastSpec = serde_json::from_value(json!({
        "output": {"width": 1280, "height": 720, "framerate": 30, "video_bitrate_kbps": 3000},
        "scene": {"layout": "split", "on_stage": ["alice", "bob"],
                  "banner": {"text": "Measuring", "visible": true}},
        "destinations": [
            {"id": "one", "url": nginx.url(), "stream_key": "one"},
            {"id": "two", "url": nginx.url(), "stream_key": "two"},
            {"id": "three", "url": nginx.url(), "stream_key": "three"},
        ],
    }))
    .expect("spec");
    broadcasts.start(&studio, spec).await.expect("start");
    for id in ["one", "two", "three"] {
        support::wait_for_state(&broadcasts, &studio, id, "live", Duration::from_secs(15)).await;
    }
    // Let decoders and encoders settle before measuring.
    tokio::time::sleep(Duration::from_secs(5)).await;

    let (cpu_before, wall_before) = (cpu_time(), Instant::now());
    tokio::time::sleep(Duration::from_secs(60)).await;
    let (cpu, wall) = (cpu_time() - cpu_before, wall_before.elapsed());
    let status = broadcasts.status(&studio).unwrap();
    println!(
        "origin CPU: {:.1} s over {:.1} s = {:.0}% of one core; destinations: {}",
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        status
            .destinations
            .iter()
            .map(|d| format!(
                "{} {} {} B dropped {}",
                d.id, d.state, d.bytes_sent, d.packets_dropped
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );

    broadcasts.stop(&studio).await.expect("stop");
    alice.stop().await;
    bob.stop().await;
}
