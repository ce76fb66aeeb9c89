//! Looking at the output the way a viewer would: ffprobe on recordings,
//! ffmpeg decoding frames of the live stream into RGB.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// What ffprobe says about a recording.
#[derive(Debug, Default)]
pub struct Probe {
    pub video_codec: String,
    pub width: u32,
    pub height: u32,
    /// Video frames actually decoded.
    pub video_frames: u64,
    pub audio_codec: String,
    pub sample_rate: u32,
    pub channels: u32,
    /// Container duration in seconds.
    pub duration: f64,
}

impl Probe {
    /// Decoded frames per second of duration.
    pub fn frame_rate(&self) -> f64 {
        self.video_frames as f64 / self.duration.max(0.001)
    }
}

/// Runs ffprobe (counting frames) on `path`.
pub async fn probe(path: &Path) -> Probe {
    let output = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-show_format",
        ])
        .args(["-of", "json"])
        .arg(path)
        .output()
        .await
        .expect("ffprobe runs");
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    let mut probe = Probe {
        duration: json["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0.0),
        ..Probe::default()
    };
    let number = |v: &serde_json::Value| {
        v.as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    };
    for stream in json["streams"].as_array().into_iter().flatten() {
        match stream["codec_type"].as_str() {
            Some("video") => {
                probe.video_codec = stream["codec_name"].as_str().unwrap_or("").to_owned();
                probe.width = number(&stream["width"]) as u32;
                probe.height = number(&stream["height"]) as u32;
                probe.video_frames = number(&stream["nb_read_frames"]);
            }
            Some("audio") => {
                probe.audio_codec = stream["codec_name"].as_str().unwrap_or("").to_owned();
                probe.sample_rate = number(&stream["sample_rate"]) as u32;
                probe.channels = number(&stream["channels"]) as u32;
            }
            _ => {}
        }
    }
    probe
}

/// Mean audio volume of a recording in dB (ffmpeg's volumedetect);
/// digital silence reads about -91 dB.
pub async fn mean_volume_db(path: &Path) -> f64 {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-i"])
        .arg(path)
        .args(["-vn", "-af", "volumedetect", "-f", "null", "-"])
        .output()
        .await
        .expect("ffmpeg runs");
    let log = String::from_utf8_lossy(&output.stderr);
    log.lines()
        .find_map(|line| line.split("mean_volume:").nth(1))
        .and_then(|rest| rest.trim().trim_end_matches("dB").trim().parse().ok())
        .unwrap_or(f64::NEG_INFINITY)
}

/// One decoded RGB frame.
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Picture {
    /// Mean colour of the square of side `2 * radius` around (`x`, `y`).
    pub fn mean(&self, x: u32, y: u32, radius: u32) -> [u8; 3] {
        let mut sum = [0u64; 3];
        let mut count = 0u64;
        for py in y.saturating_sub(radius)..(y + radius).min(self.height) {
            for px in x.saturating_sub(radius)..(x + radius).min(self.width) {
                let at = ((py * self.width + px) * 3) as usize;
                for (total, value) in sum.iter_mut().zip(&self.rgb[at..at + 3]) {
                    *total += u64::from(*value);
                }
                count += 1;
            }
        }
        let count = count.max(1);
        [
            (sum[0] / count) as u8,
            (sum[1] / count) as u8,
            (sum[2] / count) as u8,
        ]
    }

    /// The colour class around a point.
    pub fn looks(&self, x: u32, y: u32) -> Colour {
        Colour::of(self.mean(x, y, 8))
    }
}

/// Coarse colour classes: enough to tell sources, placeholder, banner and
/// background apart after two rounds of lossy coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    Red,
    Green,
    Blue,
    /// The placeholder's dark grey.
    DarkGrey,
    Black,
    Other,
}

impl Colour {
    pub fn of([r, g, b]: [u8; 3]) -> Self {
        let (r, g, b) = (i32::from(r), i32::from(g), i32::from(b));
        let spread = r.max(g).max(b) - r.min(g).min(b);
        if r > 150 && g < 100 && b < 100 {
            Colour::Red
        } else if g > 120 && r < 100 && b < 100 {
            Colour::Green
        } else if b > 150 && r < 100 && g < 100 {
            Colour::Blue
        } else if spread < 25 && (25..=80).contains(&((r + g + b) / 3)) {
            Colour::DarkGrey
        } else if r.max(g).max(b) < 25 {
            Colour::Black
        } else {
            Colour::Other
        }
    }
}

/// Plays `url` with ffmpeg and returns the last of a few decoded frames,
/// so that what is returned is the program as it is now.
pub async fn grab(url: &str, width: u32, height: u32) -> Picture {
    let run = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-rw_timeout",
            "10000000",
        ])
        .args(["-i", url, "-an", "-frames:v", "5"])
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("ffmpeg grabbed frames in time")
        .expect("ffmpeg runs");
    let size = (width * height * 3) as usize;
    assert!(
        output.stdout.len() >= size,
        "no frame from {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let last = output.stdout.len() / size * size - size;
    Picture {
        width,
        height,
        rgb: output.stdout[last..last + size].to_vec(),
    }
}
