//! What a studio's program looks like: the serde types the control plane
//! sends, checked once when they are parsed and trusted afterwards.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub use crate::layout::Layout;

/// Most sources on stage at once.
pub const MAX_ON_STAGE: usize = 9;
/// Longest ticker text, in characters.
const MAX_TICKER_CHARS: usize = 500;

/// Longest banner text, in characters.
pub const MAX_BANNER_CHARS: usize = 200;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;
/// Largest logo or background image, in bytes (decoded).
pub const MAX_IMAGE_BYTES: usize = 4 * 1024 * 1024;

/// Why a scene or profile was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SceneError {
    /// A colour is not `#rrggbb`.
    #[error("colour must be #rrggbb")]
    Color,
    /// An image is not base64, too large, or neither PNG nor JPEG.
    #[error("image must be a base64 PNG or JPEG of at most {MAX_IMAGE_BYTES} bytes")]
    Image,
    /// A source id has characters other than `[A-Za-z0-9_-]` or is too long.
    #[error("source ids must be 1-64 characters of [A-Za-z0-9_-]")]
    SourceId,
    /// Too many sources on stage, or one listed twice.
    #[error("at most {MAX_ON_STAGE} distinct sources can be on stage")]
    OnStage,
    /// Banner or ticker text, or a display name, is too long.
    #[error(
        "banner text is limited to {MAX_BANNER_CHARS}, ticker text to {MAX_TICKER_CHARS} and names to {MAX_NAME_CHARS} characters"
    )]
    TextTooLong,
    /// The output size, frame rate or bitrate is not one the origin offers.
    #[error("output must be 640x360, 854x480, 1280x720 or 1920x1080 at 24-60 fps, 300-20000 kb/s")]
    Profile,
}

/// A source's id within its studio (the `{source}` of its track names).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SourceId(String);

impl SourceId {
    /// Parses an id, checking it is usable in a track name.
    pub fn new(id: &str) -> Result<Self, SceneError> {
        if buildstream_mesh::is_valid_part(id) {
            Ok(Self(id.to_owned()))
        } else {
            Err(SceneError::SourceId)
        }
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SourceId {
    type Error = SceneError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<SourceId> for String {
    fn from(value: SourceId) -> Self {
        value.0
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An opaque RGB colour, written `#rrggbb`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Color {
    /// Red.
    pub r: u8,
    /// Green.
    pub g: u8,
    /// Blue.
    pub b: u8,
}

impl Color {
    /// Parses `#rrggbb`.
    pub fn parse(text: &str) -> Result<Self, SceneError> {
        let hex = text.strip_prefix('#').ok_or(SceneError::Color)?;
        if hex.len() != 6 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SceneError::Color);
        }
        let channel =
            |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| SceneError::Color);
        Ok(Self {
            r: channel(0)?,
            g: channel(2)?,
            b: channel(4)?,
        })
    }

    /// The colour as opaque `0xAARRGGBB`, the form GStreamer elements take.
    pub fn argb(self) -> u32 {
        0xFF00_0000 | (u32::from(self.r) << 16) | (u32::from(self.g) << 8) | u32::from(self.b)
    }
}

impl TryFrom<String> for Color {
    type Error = SceneError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Color> for String {
    fn from(c: Color) -> Self {
        format!("#{:02x}{:02x}{:02x}", c.r, c.g, c.b)
    }
}

/// The kind of an [`Image`], from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// PNG.
    Png,
    /// JPEG.
    Jpeg,
}

/// A PNG or JPEG image, sent as base64.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Image {
    bytes: Bytes,
    format: ImageFormat,
}

impl Image {
    /// Checks that `bytes` is a PNG or JPEG of acceptable size.
    pub fn from_bytes(bytes: Bytes) -> Result<Self, SceneError> {
        if bytes.len() > MAX_IMAGE_BYTES {
            return Err(SceneError::Image);
        }
        let format = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            ImageFormat::Png
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            ImageFormat::Jpeg
        } else {
            return Err(SceneError::Image);
        };
        Ok(Self { bytes, format })
    }

    /// The encoded image.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// PNG or JPEG.
    pub fn format(&self) -> ImageFormat {
        self.format
    }

    /// Width and height from a PNG's IHDR chunk, `None` for a JPEG (whose
    /// size needs a decoder to find).
    pub fn png_size(&self) -> Option<(u32, u32)> {
        // Signature (8), chunk length (4), "IHDR" (4), width (4), height (4).
        if self.format != ImageFormat::Png
            || self.bytes.len() < 24
            || &self.bytes[12..16] != b"IHDR"
        {
            return None;
        }
        let word = |at: usize| {
            u32::from_be_bytes([
                self.bytes[at],
                self.bytes[at + 1],
                self.bytes[at + 2],
                self.bytes[at + 3],
            ])
        };
        let (w, h) = (word(16), word(20));
        (w > 0 && h > 0).then_some((w, h))
    }
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Image({:?}, {} bytes)", self.format, self.bytes.len())
    }
}

impl TryFrom<String> for Image {
    type Error = SceneError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        // Accept a data URL as browsers produce it, as well as bare base64.
        let data = value
            .split_once(";base64,")
            .map_or(value.as_str(), |(_, d)| d);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|_| SceneError::Image)?;
        Self::from_bytes(Bytes::from(bytes))
    }
}

impl From<Image> for String {
    fn from(image: Image) -> Self {
        base64::engine::general_purpose::STANDARD.encode(&image.bytes)
    }
}

/// The lower-third banner.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "RawBanner")]
pub struct Banner {
    /// The text shown in the bar.
    pub text: String,
    /// Whether the banner is on screen.
    pub visible: bool,
}

#[derive(Deserialize)]
struct RawBanner {
    #[serde(default)]
    text: String,
    #[serde(default)]
    visible: bool,
}

impl TryFrom<RawBanner> for Banner {
    type Error = SceneError;
    fn try_from(raw: RawBanner) -> Result<Self, Self::Error> {
        if raw.text.chars().count() > MAX_BANNER_CHARS {
            return Err(SceneError::TextTooLong);
        }
        Ok(Self {
            text: raw.text,
            visible: raw.visible,
        })
    }
}

/// The ticker: a line of text scrolling right to left along the bottom.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "RawBanner")]
pub struct Ticker {
    /// The text that scrolls.
    pub text: String,
    /// Whether it is on screen.
    pub visible: bool,
}

impl TryFrom<RawBanner> for Ticker {
    type Error = SceneError;
    fn try_from(raw: RawBanner) -> Result<Self, Self::Error> {
        if raw.text.chars().count() > MAX_TICKER_CHARS {
            return Err(SceneError::TextTooLong);
        }
        Ok(Self {
            text: raw.text,
            visible: raw.visible,
        })
    }
}

/// What is behind the sources: a colour or an image (scaled to the frame).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawBackground", into = "RawBackground")]
pub enum Background {
    /// A solid colour.
    Color(Color),
    /// An image stretched over the whole frame.
    Image(Image),
}

impl Default for Background {
    fn default() -> Self {
        Background::Color(Color { r: 0, g: 0, b: 0 })
    }
}

/// The wire form: `{"color": "#rrggbb"}` or `{"image": "<base64>"}`; an
/// image wins when both are given.
#[derive(Serialize, Deserialize)]
struct RawBackground {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    color: Option<Color>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image: Option<Image>,
}

impl From<RawBackground> for Background {
    fn from(raw: RawBackground) -> Self {
        match (raw.image, raw.color) {
            (Some(image), _) => Background::Image(image),
            (None, Some(color)) => Background::Color(color),
            (None, None) => Background::default(),
        }
    }
}

impl From<Background> for RawBackground {
    fn from(background: Background) -> Self {
        match background {
            Background::Color(color) => RawBackground {
                color: Some(color),
                image: None,
            },
            Background::Image(image) => RawBackground {
                color: None,
                image: Some(image),
            },
        }
    }
}

/// Everything about how the program looks, applied live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawScene", into = "RawScene")]
pub struct Scene {
    /// How the on-stage sources are arranged.
    pub layout: Layout,
    /// The sources on stage, in layout order (distinct).
    pub on_stage: Vec<SourceId>,
    /// The lower-third banner.
    pub banner: Banner,
    /// The scrolling ticker.
    pub ticker: Ticker,
    /// A PNG logo shown in the top-right corner.
    pub logo: Option<Image>,
    /// The background.
    pub background: Background,
    /// The brand colour, used for the banner bar.
    pub brand_color: Color,
    /// Display names by source id, shown on a source's placeholder.
    pub names: BTreeMap<SourceId, String>,
}

impl Default for Scene {
    fn default() -> Self {
        Self {
            layout: Layout::default(),
            on_stage: Vec::new(),
            banner: Banner::default(),
            ticker: Ticker::default(),
            logo: None,
            background: Background::default(),
            brand_color: DEFAULT_BRAND,
            names: BTreeMap::new(),
        }
    }
}

/// A calm blue, for studios that never picked a brand colour.
const DEFAULT_BRAND: Color = Color {
    r: 0x1e,
    g: 0x5e,
    b: 0xd6,
};

impl Scene {
    /// The name shown for a source: its display name, or its id.
    pub fn display_name<'a>(&'a self, source: &'a SourceId) -> &'a str {
        self.names
            .get(source)
            .map_or(source.as_str(), String::as_str)
    }
}

#[derive(Serialize, Deserialize)]
struct RawScene {
    #[serde(default)]
    layout: Layout,
    #[serde(default)]
    on_stage: Vec<SourceId>,
    #[serde(default)]
    banner: Banner,
    #[serde(default)]
    ticker: Ticker,
    #[serde(default)]
    logo: Option<Image>,
    #[serde(default)]
    background: Background,
    #[serde(default = "default_brand")]
    brand_color: Color,
    #[serde(default)]
    names: BTreeMap<SourceId, String>,
}

fn default_brand() -> Color {
    DEFAULT_BRAND
}

impl TryFrom<RawScene> for Scene {
    type Error = SceneError;
    fn try_from(raw: RawScene) -> Result<Self, Self::Error> {
        let mut seen = std::collections::HashSet::new();
        if raw.on_stage.len() > MAX_ON_STAGE || !raw.on_stage.iter().all(|s| seen.insert(s)) {
            return Err(SceneError::OnStage);
        }
        if raw
            .names
            .values()
            .any(|n| n.chars().count() > MAX_NAME_CHARS)
        {
            return Err(SceneError::TextTooLong);
        }
        Ok(Self {
            layout: raw.layout,
            on_stage: raw.on_stage,
            banner: raw.banner,
            ticker: raw.ticker,
            logo: raw.logo,
            background: raw.background,
            brand_color: raw.brand_color,
            names: raw.names,
        })
    }
}

impl From<Scene> for RawScene {
    fn from(scene: Scene) -> Self {
        Self {
            layout: scene.layout,
            on_stage: scene.on_stage,
            banner: scene.banner,
            ticker: scene.ticker,
            logo: scene.logo,
            background: scene.background,
            brand_color: scene.brand_color,
            names: scene.names,
        }
    }
}

/// The program's size, frame rate and video bitrate. Fixed for the life of
/// a broadcast: platforms dislike mid-stream changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawProfile", into = "RawProfile")]
pub struct OutputProfile {
    width: u32,
    height: u32,
    framerate: u32,
    video_bitrate_kbps: u32,
}

/// Sizes offered: 16:9 steps every platform accepts.
const SIZES: [(u32, u32); 4] = [(640, 360), (854, 480), (1280, 720), (1920, 1080)];

impl OutputProfile {
    /// Checks a profile.
    pub fn new(
        width: u32,
        height: u32,
        framerate: u32,
        video_bitrate_kbps: u32,
    ) -> Result<Self, SceneError> {
        let valid = SIZES.contains(&(width, height))
            && (24..=60).contains(&framerate)
            && (300..=20_000).contains(&video_bitrate_kbps);
        if !valid {
            return Err(SceneError::Profile);
        }
        Ok(Self {
            width,
            height,
            framerate,
            video_bitrate_kbps,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Frames per second.
    pub fn framerate(&self) -> u32 {
        self.framerate
    }

    /// Requested video bitrate in kb/s (destinations may lower it).
    pub fn video_bitrate_kbps(&self) -> u32 {
        self.video_bitrate_kbps
    }

    /// Frames between keyframes: two seconds' worth.
    pub fn keyframe_interval_frames(&self) -> u32 {
        self.framerate * KEYFRAME_INTERVAL_SECONDS
    }
}

/// Seconds between keyframes; every platform accepts 2 s.
pub const KEYFRAME_INTERVAL_SECONDS: u32 = 2;

impl Default for OutputProfile {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            framerate: 30,
            video_bitrate_kbps: 3000,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct RawProfile {
    #[serde(default = "default_width")]
    width: u32,
    #[serde(default = "default_height")]
    height: u32,
    #[serde(default = "default_framerate")]
    framerate: u32,
    #[serde(default)]
    video_bitrate_kbps: Option<u32>,
}

fn default_width() -> u32 {
    1280
}

fn default_height() -> u32 {
    720
}

fn default_framerate() -> u32 {
    30
}

impl TryFrom<RawProfile> for OutputProfile {
    type Error = SceneError;
    fn try_from(raw: RawProfile) -> Result<Self, Self::Error> {
        // Without an explicit bitrate, scale with the pixel rate from 3 Mb/s
        // at 720p30.
        let bitrate = raw.video_bitrate_kbps.unwrap_or_else(|| {
            let pixels = u64::from(raw.width) * u64::from(raw.height) * u64::from(raw.framerate);
            (pixels * 3000 / (1280 * 720 * 30)).clamp(300, 20_000) as u32
        });
        Self::new(raw.width, raw.height, raw.framerate, bitrate)
    }
}

impl From<OutputProfile> for RawProfile {
    fn from(p: OutputProfile) -> Self {
        Self {
            width: p.width,
            height: p.height,
            framerate: p.framerate,
            video_bitrate_kbps: Some(p.video_bitrate_kbps),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG_1X1: &str = concat!(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAE",
        "hQGAhKmMIQAAAABJRU5ErkJggg=="
    );

    #[test]
    fn parses_a_full_scene() {
        let json = format!(
            r##"{{"layout":"split","on_stage":["alice","bob"],
               "banner":{{"text":"Live now","visible":true}},
               "logo":"{PNG_1X1}","background":{{"color":"#102030"}},
               "brand_color":"#FF8800","names":{{"alice":"Alice A."}}}}"##
        );
        let scene: Scene = serde_json::from_str(&json).unwrap();
        assert_eq!(scene.layout, Layout::Split);
        assert_eq!(scene.on_stage.len(), 2);
        assert_eq!(scene.brand_color.argb(), 0xFFFF_8800);
        assert_eq!(scene.logo.as_ref().unwrap().png_size(), Some((1, 1)));
        assert_eq!(
            scene.background,
            Background::Color(Color::parse("#102030").unwrap())
        );
        assert_eq!(scene.display_name(&scene.on_stage[0]), "Alice A.");
        assert_eq!(scene.display_name(&scene.on_stage[1]), "bob");

        // Round trip through the wire form.
        let again: Scene = serde_json::from_str(&serde_json::to_string(&scene).unwrap()).unwrap();
        assert_eq!(again, scene);
    }

    #[test]
    fn everything_has_a_default() {
        let scene: Scene = serde_json::from_str("{}").unwrap();
        assert_eq!(scene, Scene::default());
        let profile: OutputProfile = serde_json::from_str("{}").unwrap();
        assert_eq!(profile, OutputProfile::default());
        assert_eq!(profile.keyframe_interval_frames(), 60);
        let full_hd: OutputProfile =
            serde_json::from_str(r#"{"width":1920,"height":1080}"#).unwrap();
        assert_eq!(full_hd.video_bitrate_kbps(), 6750);
    }

    #[test]
    fn refuses_bad_input() {
        let bad = [
            r#"{"brand_color":"red"}"#,
            r##"{"brand_color":"#12345"}"##,
            r#"{"on_stage":["a/b"]}"#,
            r#"{"on_stage":["a","a"]}"#,
            r#"{"logo":"bm90IGFuIGltYWdl"}"#,
            r#"{"background":{"image":"%%%"}}"#,
            r#"{"layout":"mosaic"}"#,
        ];
        for json in bad {
            assert!(serde_json::from_str::<Scene>(json).is_err(), "{json}");
        }
        let long = format!(r#"{{"banner":{{"text":"{}"}}}}"#, "x".repeat(201));
        assert!(serde_json::from_str::<Scene>(&long).is_err());
        for json in [r#"{"width":1000,"height":700}"#, r#"{"framerate":120}"#] {
            assert!(
                serde_json::from_str::<OutputProfile>(json).is_err(),
                "{json}"
            );
        }
    }

    #[test]
    fn accepts_data_urls_and_jpeg() {
        let image: Image = format!("data:image/png;base64,{PNG_1X1}")
            .try_into()
            .unwrap();
        assert_eq!(image.format(), ImageFormat::Png);
        let jpeg = Image::from_bytes(Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xE0])).unwrap();
        assert_eq!(jpeg.format(), ImageFormat::Jpeg);
        assert_eq!(jpeg.png_size(), None);
    }
}
