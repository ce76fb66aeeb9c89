//! The scene document: what the program shows. The studio service stores
//! and validates it; the origin composes exactly this.

use base64::Engine;
use buildstream_service::ApiError;
use serde::{Deserialize, Serialize};

/// Largest accepted logo or background image, decoded.
const MAX_IMAGE_BYTES: usize = 2 * 1024 * 1024;

/// Largest accepted image side in pixels: a small file can decode to
/// gigabytes (a "decompression bomb"), so dimensions are checked, not bytes.
const MAX_IMAGE_SIDE: u32 = 4096;

/// Most sources on stage at once (the grid is 2x2).
pub const MAX_ON_STAGE: usize = 4;

/// How the on-stage sources are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// The first on-stage source fills the frame.
    #[default]
    Solo,
    /// The first two side by side.
    Split,
    /// Up to four in a grid.
    Grid,
    /// The first full frame, the second small in a corner.
    Pip,
    /// The first (a shared screen) large, the others beside it.
    Screen,
}

/// The lower-third banner.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Banner {
    /// Text shown, at most 200 characters.
    #[serde(default)]
    pub text: String,
    /// Whether it is on screen.
    #[serde(default)]
    pub visible: bool,
}

/// What is behind the sources: a colour, or an image over it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Background {
    /// `#rrggbb`.
    #[serde(default = "default_background_color")]
    pub color: String,
    /// PNG or JPEG as a `data:` URL, drawn over the colour, scaled to fill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl Default for Background {
    fn default() -> Self {
        Self {
            color: default_background_color(),
            image: None,
        }
    }
}

/// A studio's scene.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Scene {
    /// Arrangement of the on-stage sources.
    #[serde(default)]
    pub layout: Layout,
    /// Source ids on stage, in slot order.
    #[serde(default)]
    pub on_stage: Vec<String>,
    /// The banner.
    #[serde(default)]
    pub banner: Banner,
    /// A line of text scrolling across the bottom of the frame.
    #[serde(default)]
    pub ticker: Banner,
    /// The host's prepared banners, one of which `banner` shows; kept with
    /// the studio so that any of the host's browsers has them.
    #[serde(default)]
    pub banners: Vec<String>,
    /// PNG logo as a `data:image/png;base64,` URL, top-right corner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logo: Option<String>,
    /// The background.
    #[serde(default)]
    pub background: Background,
    /// `#rrggbb`, the banner's colour.
    #[serde(default = "default_brand_color")]
    pub brand_color: String,
}

impl Default for Scene {
    fn default() -> Self {
        Self {
            layout: Layout::Solo,
            on_stage: Vec::new(),
            banner: Banner::default(),
            ticker: Banner::default(),
            banners: Vec::new(),
            logo: None,
            background: Background::default(),
            brand_color: default_brand_color(),
        }
    }
}

impl Scene {
    /// Checks the scene against the studio's sources.
    pub fn validate(&self, source_ids: &[String]) -> Result<(), ApiError> {
        if self.on_stage.len() > MAX_ON_STAGE {
            return Err(ApiError::invalid(
                "invalid_scene",
                format!("at most {MAX_ON_STAGE} sources on stage"),
            ));
        }
        for (i, id) in self.on_stage.iter().enumerate() {
            if !source_ids.contains(id) {
                return Err(ApiError::invalid(
                    "unknown_source",
                    format!("on_stage[{i}] is not a source of this studio"),
                ));
            }
            if self.on_stage[..i].contains(id) {
                return Err(ApiError::invalid(
                    "invalid_scene",
                    format!("on_stage[{i}] appears twice"),
                ));
            }
        }
        if self.banner.text.chars().count() > 200 {
            return Err(ApiError::invalid(
                "invalid_scene",
                "banner text is at most 200 characters",
            ));
        }
        if self.banners.len() > 20 || self.banners.iter().any(|b| b.chars().count() > 200) {
            return Err(ApiError::invalid(
                "invalid_scene",
                "at most 20 prepared banners of at most 200 characters",
            ));
        }
        if self.ticker.text.chars().count() > 500 {
            return Err(ApiError::invalid(
                "invalid_scene",
                "ticker text is at most 500 characters",
            ));
        }
        check_color("brand_color", &self.brand_color)?;
        check_color("background.color", &self.background.color)?;
        if let Some(logo) = &self.logo {
            decode_image("logo", logo, &[ImageKind::Png])?;
        }
        if let Some(image) = &self.background.image {
            decode_image(
                "background.image",
                image,
                &[ImageKind::Png, ImageKind::Jpeg],
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImageKind {
    Png,
    Jpeg,
}

/// Decodes a `data:image/...;base64,` URL, checking type and size.
pub fn decode_data_url(data_url: &str) -> Option<Vec<u8>> {
    let (_, payload) = data_url.split_once(";base64,")?;
    base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()
}

fn decode_image(field: &str, data_url: &str, allowed: &[ImageKind]) -> Result<(), ApiError> {
    let invalid = |why: &str| ApiError::invalid("invalid_image", format!("{field}: {why}"));
    let (mime, _) = data_url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
        .ok_or_else(|| invalid("must be a data:image/...;base64, URL"))?;
    let bytes = decode_data_url(data_url).ok_or_else(|| invalid("bad base64"))?;
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(invalid("larger than 2 MiB"));
    }
    let kind = if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        ImageKind::Png
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        ImageKind::Jpeg
    } else {
        return Err(invalid("not a PNG or JPEG image"));
    };
    let declared = match mime {
        "image/png" => ImageKind::Png,
        "image/jpeg" => ImageKind::Jpeg,
        _ => return Err(invalid("type must be image/png or image/jpeg")),
    };
    if declared != kind || !allowed.contains(&kind) {
        return Err(invalid("image type not accepted here"));
    }
    let size = match kind {
        ImageKind::Png => png_size(&bytes),
        ImageKind::Jpeg => jpeg_size(&bytes),
    };
    match size {
        Some((w, h)) if w > 0 && h > 0 && w <= MAX_IMAGE_SIDE && h <= MAX_IMAGE_SIDE => Ok(()),
        Some(_) => Err(invalid("image must be at most 4096x4096 pixels")),
        None => Err(invalid("image header is unreadable")),
    }
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    // Signature (8), chunk length (4), "IHDR" (4), width (4), height (4).
    if bytes.len() < 24 || &bytes[12..16] != b"IHDR" {
        return None;
    }
    let word =
        |at: usize| u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    Some((word(16), word(20)))
}

/// Width and height from a JPEG's start-of-frame segment.
fn jpeg_size(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut at = 2;
    while at + 4 <= bytes.len() {
        if bytes[at] != 0xff {
            return None;
        }
        let marker = bytes[at + 1];
        let length = usize::from(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        // SOF0-SOF15 carry the size, except DHT (C4), JPG (C8) and DAC (CC).
        if (0xc0..=0xcf).contains(&marker) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
            let sof = bytes.get(at + 5..at + 9)?;
            let height = u16::from_be_bytes([sof[0], sof[1]]);
            let width = u16::from_be_bytes([sof[2], sof[3]]);
            return Some((width.into(), height.into()));
        }
        at += 2 + length;
    }
    None
}

fn check_color(field: &str, color: &str) -> Result<(), ApiError> {
    let valid = color.len() == 7
        && color.starts_with('#')
        && color[1..].bytes().all(|b| b.is_ascii_hexdigit());
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "invalid_color",
            format!("{field} must be #rrggbb"),
        ))
    }
}

fn default_background_color() -> String {
    "#101820".to_owned()
}

fn default_brand_color() -> String {
    "#2563eb".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_data_url() -> String {
        png_of_size(64, 32)
    }

    fn png_of_size(width: u32, height: u32) -> String {
        let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        bytes.extend(width.to_be_bytes());
        bytes.extend(height.to_be_bytes());
        format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        )
    }

    #[test]
    fn default_scene_is_valid() {
        Scene::default().validate(&[]).unwrap();
    }

    #[test]
    fn on_stage_must_be_own_distinct_sources() {
        let sources = vec!["src_a".to_owned(), "src_b".to_owned()];
        let mut scene = Scene {
            on_stage: vec!["src_a".into(), "src_b".into()],
            ..Scene::default()
        };
        scene.validate(&sources).unwrap();
        scene.on_stage = vec!["src_a".into(), "src_a".into()];
        assert_eq!(scene.validate(&sources).unwrap_err().code, "invalid_scene");
        scene.on_stage = vec!["src_other".into()];
        assert_eq!(scene.validate(&sources).unwrap_err().code, "unknown_source");
    }

    #[test]
    fn colors_and_images_are_checked() {
        let mut scene = Scene {
            brand_color: "red".into(),
            ..Scene::default()
        };
        assert_eq!(scene.validate(&[]).unwrap_err().code, "invalid_color");
        scene.brand_color = "#aabbcc".into();
        scene.logo = Some(png_data_url());
        scene.validate(&[]).unwrap();
        scene.logo = Some("data:image/png;base64,aGVsbG8=".into());
        assert_eq!(scene.validate(&[]).unwrap_err().code, "invalid_image");
        scene.logo = Some("https://example.com/logo.png".into());
        assert_eq!(scene.validate(&[]).unwrap_err().code, "invalid_image");
    }

    /// Guards against a small PNG that decodes to gigabytes at the origin.
    #[test]
    fn huge_image_dimensions_are_refused() {
        let mut scene = Scene {
            logo: Some(png_of_size(20_000, 20_000)),
            ..Scene::default()
        };
        let err = scene.validate(&[]).unwrap_err();
        assert!(err.message.contains("4096"), "{}", err.message);
        scene.logo = Some(png_of_size(4096, 4096));
        scene.validate(&[]).unwrap();
    }

    #[test]
    fn jpeg_size_is_read_from_its_frame_header() {
        // SOI, an APP0 segment of 4 bytes, then SOF0 with 8-bit, 480x640.
        let jpeg = [
            0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x00, 0x00, 0xff, 0xc0, 0x00, 0x11, 0x08, 0x01,
            0xe0, 0x02, 0x80,
        ];
        assert_eq!(jpeg_size(&jpeg), Some((640, 480)));
        assert_eq!(jpeg_size(&jpeg[..10]), None);
    }

    #[test]
    fn layout_names_are_lowercase() {
        let scene: Scene = serde_json::from_str(r#"{"layout":"split"}"#).unwrap();
        assert_eq!(scene.layout, Layout::Split);
        assert!(serde_json::from_str::<Scene>(r#"{"layout":"mosaic"}"#).is_err());
    }
}
