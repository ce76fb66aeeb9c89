//! Platform presets: where the big platforms ingest, and what they accept.
//!
//! Sources, checked when written (2026):
//! - YouTube, "Delivering Live YouTube Content via RTMPS": RTMPS on port 443
//!   of `a.rtmps.youtube.com`, application `live2`; "Choose live encoder
//!   settings": keyframe frequency 2 s recommended, 4 s at most; H.264
//!   bitrates up to about 10 Mb/s at 1080p30 and 12 Mb/s at 1080p60.
//! - Twitch, "Video Broadcast" (dev.twitch.tv) and the broadcasting
//!   guidelines: `rtmp(s)://<ingest>/app/<key>`; the global ingest name is
//!   `ingest.global-contribute.live-video.net` (it replaced
//!   `live.twitch.tv`); keyframe interval 2 s; 6000 kb/s at most without
//!   enhanced broadcasting.
//! - Facebook, Live Video API reference: RTMPS only, at
//!   `live-api-s.facebook.com:443/rtmp/`; keyframe 2 s recommended, never
//!   above 4 s; 720p30 up to 4000 kb/s, 720p60 and 1080p30 up to 6000 kb/s,
//!   1080p60 up to 9000 kb/s, 480p 2000 kb/s, 360p 1000 kb/s.

use serde::{Deserialize, Serialize};

use crate::scene::OutputProfile;

/// Which platform a destination is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// YouTube Live.
    Youtube,
    /// Twitch.
    Twitch,
    /// Facebook Live.
    Facebook,
    /// Any RTMP or RTMPS server; the URL is required.
    #[default]
    Custom,
}

/// What a platform accepts from an encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Highest video bitrate in kb/s.
    pub max_video_bitrate_kbps: u32,
    /// Longest keyframe interval in seconds.
    pub max_keyframe_interval_seconds: u32,
}

impl Platform {
    /// The platform's ingest URL, used when the destination names none.
    pub fn default_url(self) -> Option<&'static str> {
        match self {
            Platform::Youtube => Some("rtmps://a.rtmps.youtube.com:443/live2"),
            Platform::Twitch => Some("rtmps://ingest.global-contribute.live-video.net:443/app"),
            Platform::Facebook => Some("rtmps://live-api-s.facebook.com:443/rtmp/"),
            Platform::Custom => None,
        }
    }

    /// Stable name, for status and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Youtube => "youtube",
            Platform::Twitch => "twitch",
            Platform::Facebook => "facebook",
            Platform::Custom => "custom",
        }
    }

    /// What the platform accepts for a program of this profile.
    pub fn limits(self, profile: &OutputProfile) -> Limits {
        let high_rate = profile.framerate() > 30;
        let full_hd = profile.height() >= 1080;
        let max_video_bitrate_kbps = match self {
            Platform::Youtube => match (full_hd, high_rate) {
                (true, true) => 12_000,
                _ => 10_000,
            },
            Platform::Twitch => 6_000,
            Platform::Facebook => match (profile.height(), high_rate) {
                (h, true) if h >= 1080 => 9_000,
                (h, _) if h >= 720 && (high_rate || full_hd) => 6_000,
                (h, _) if h >= 720 => 4_000,
                (h, _) if h >= 480 => 2_000,
                _ => 1_000,
            },
            Platform::Custom => u32::MAX,
        };
        let max_keyframe_interval_seconds = match self {
            Platform::Twitch => 2,
            Platform::Youtube | Platform::Facebook => 4,
            Platform::Custom => u32::MAX,
        };
        Limits {
            max_video_bitrate_kbps,
            max_keyframe_interval_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_point_at_rtmps_on_443() {
        for platform in [Platform::Youtube, Platform::Twitch, Platform::Facebook] {
            let url = platform.default_url().unwrap();
            assert!(
                url.starts_with("rtmps://") && url.contains(":443/"),
                "{url}"
            );
        }
        assert_eq!(Platform::Custom.default_url(), None);
    }

    #[test]
    fn limits_follow_the_profile() {
        let p720 = OutputProfile::new(1280, 720, 30, 3000).unwrap();
        let p1080_60 = OutputProfile::new(1920, 1080, 60, 9000).unwrap();
        let p360 = OutputProfile::new(640, 360, 30, 800).unwrap();
        assert_eq!(
            Platform::Facebook.limits(&p720).max_video_bitrate_kbps,
            4_000
        );
        assert_eq!(
            Platform::Facebook.limits(&p1080_60).max_video_bitrate_kbps,
            9_000
        );
        assert_eq!(
            Platform::Facebook.limits(&p360).max_video_bitrate_kbps,
            1_000
        );
        assert_eq!(
            Platform::Twitch.limits(&p1080_60).max_video_bitrate_kbps,
            6_000
        );
        assert_eq!(
            Platform::Twitch.limits(&p720).max_keyframe_interval_seconds,
            2
        );
        assert_eq!(
            Platform::Youtube.limits(&p1080_60).max_video_bitrate_kbps,
            12_000
        );
        assert_eq!(
            Platform::Custom.limits(&p720).max_video_bitrate_kbps,
            u32::MAX
        );
    }
}
