//! Applying a [`Scene`] to the playing pipeline: which slots exist and
//! where they are, the banner, the background and the logo.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::image;
use super::output::{LogoSlot, Output};
use super::slot::{ghost_src, place, unique, Slot};
use super::{lock, Branch, CompositorError, Core, AUDIO_CHANNELS, AUDIO_RATE};
use crate::layout::{arrange, Rect};
use crate::scene::{Background, Image, Scene};

/// Stacking order, bottom to top. Source slots take two levels each
/// (placeholder, then video) from `SLOTS_Z` on.
const BACKGROUND_Z: u32 = 0;
const BACKGROUND_IMAGE_Z: u32 = 1;
const SLOTS_Z: u32 = 10;
const BANNER_Z: u32 = 200;
const TICKER_Z: u32 = 201;
/// Static layers are rendered a few times a second; the compositor holds
/// each frame until the next one.
const STATIC_FPS: i32 = 5;
/// Frame rate of layers that move (the ticker).
const MOVING_FPS: i32 = 30;

/// Everything the current scene put into the pipeline.
pub(crate) struct Stage {
    core: Arc<Core>,
    applied: Option<Scene>,
    slots: Vec<Slot>,
    /// The background colour; replaced, never changed in place (see
    /// [`solid_bin`]).
    background: Branch,
    // Permanent layer, kept for the life of the pipeline.
    _silence_branch: Branch,
    background_image: Option<Branch>,
    banner: Banner,
    ticker: Ticker,
    logo: LogoSlot,
}

/// The scrolling line at the bottom: a dark bar at full frame rate whose
/// text moves with the bar's own timestamps, so it scrolls smoothly however
/// the pipeline is scheduled.
struct Ticker {
    branch: Branch,
    text: gst::Element,
    rect: Rect,
    /// Characters of the current text, for the scroll's wrap-around.
    chars: Arc<AtomicUsize>,
}

struct Banner {
    branch: Branch,
    text: gst::Element,
    rect: Rect,
}

impl Stage {
    /// Adds the permanent layers: background colour, silence and banner.
    pub fn new(core: Arc<Core>, output: Output) -> Result<Self, CompositorError> {
        let (width, height) = (core.profile.width() as i32, core.profile.height() as i32);

        let background = background_branch(&core, 0xFF00_0000)?;

        // Silence under the sources' audio: the mix, and so the program's
        // audio, keeps going when nobody on stage has any.
        let silence = silence_bin()?;
        let silence_branch = core.attach(silence, &core.audio_mixer)?;

        // A full-width bar in the lower third.
        let bar_height = (height * 12 / 100) & !1;
        let rect = Rect {
            x: 0,
            y: (height - bar_height - height * 8 / 100) & !1,
            width,
            height: bar_height,
        };
        let banner = Banner::build(&core, rect, 0xFF00_0000, "")?;
        let ticker_height = (height * 6 / 100) & !1;
        let ticker = Ticker::build(
            &core,
            Rect {
                x: 0,
                y: height - ticker_height,
                width,
                height: ticker_height,
            },
        )?;

        Ok(Self {
            core,
            applied: None,
            slots: Vec::new(),
            background,
            _silence_branch: silence_branch,
            background_image: None,
            banner,
            ticker,
            logo: output.logo,
        })
    }

    /// Brings the pipeline to `scene`, touching only what changed.
    pub fn apply(&mut self, scene: &Scene) -> Result<(), CompositorError> {
        let previous = self.applied.take();
        self.apply_slots(scene)?;

        let brand_changed = previous
            .as_ref()
            .is_none_or(|p| p.brand_color != scene.brand_color);
        if brand_changed {
            let text = self.banner.text.property::<String>("text");
            let banner = Banner::build(
                &self.core,
                self.banner.rect,
                scene.brand_color.argb(),
                &text,
            )?;
            let old = std::mem::replace(&mut self.banner, banner);
            self.core.detach(old.branch);
        }
        if previous
            .as_ref()
            .is_none_or(|p| p.banner.text != scene.banner.text)
        {
            self.banner.text.set_property(
                "text",
                gst::glib::markup_escape_text(&scene.banner.text).as_str(),
            );
        }
        let banner_shown = scene.banner.visible && !scene.banner.text.is_empty();
        place(
            &self.banner.branch.pad,
            Some(self.banner.rect),
            BANNER_Z,
            banner_shown,
            false,
        );

        if previous
            .as_ref()
            .is_none_or(|p| p.ticker.text != scene.ticker.text)
        {
            self.ticker
                .chars
                .store(scene.ticker.text.chars().count(), Ordering::Relaxed);
            self.ticker.text.set_property(
                "text",
                gst::glib::markup_escape_text(&scene.ticker.text).as_str(),
            );
        }
        place(
            &self.ticker.branch.pad,
            Some(self.ticker.rect),
            TICKER_Z,
            scene.ticker.visible && !scene.ticker.text.is_empty(),
            false,
        );

        if previous
            .as_ref()
            .is_none_or(|p| p.background != scene.background)
        {
            self.apply_background(&scene.background)?;
        }
        if previous.as_ref().is_none_or(|p| p.logo != scene.logo) {
            self.apply_logo(scene.logo.as_ref())?;
        }
        self.applied = Some(scene.clone());
        Ok(())
    }

    fn apply_slots(&mut self, scene: &Scene) -> Result<(), CompositorError> {
        // Sources that left the stage go first, freeing their pads.
        let mut kept = Vec::with_capacity(scene.on_stage.len());
        for slot in std::mem::take(&mut self.slots) {
            if scene.on_stage.contains(&slot.source) {
                kept.push(slot);
            } else {
                let studio = &self.core.studio;
                tracing::info!(%studio, source = %slot.source, "source left the stage");
                slot.remove();
            }
        }
        for source in &scene.on_stage {
            let position = kept.iter().position(|slot| &slot.source == source);
            let slot = match position {
                Some(index) => kept.swap_remove(index),
                None => {
                    let studio = &self.core.studio;
                    tracing::info!(%studio, %source, "source joined the stage");
                    Slot::new(
                        self.core.clone(),
                        source.clone(),
                        scene.display_name(source),
                    )?
                }
            };
            self.slots.push(slot);
        }

        let (width, height) = (self.core.profile.width(), self.core.profile.height());
        let tiles = arrange(scene.layout, self.slots.len(), width, height);
        for (index, (slot, tile)) in self.slots.iter().zip(tiles).enumerate() {
            slot.place(tile, SLOTS_Z + 2 * index as u32);
            slot.set_name(scene.display_name(&slot.source));
        }
        Ok(())
    }

    fn apply_background(&mut self, background: &Background) -> Result<(), CompositorError> {
        if let Some(old) = self.background_image.take() {
            self.core.detach(old);
        }
        let color = match background {
            Background::Color(color) => color.argb(),
            Background::Image(_) => 0xFF00_0000,
        };
        let replacement = background_branch(&self.core, color)?;
        let old = std::mem::replace(&mut self.background, replacement);
        self.core.detach(old);
        match background {
            Background::Color(_) => {}
            Background::Image(image) => {
                let (width, height) = (self.core.profile.width(), self.core.profile.height());
                let decoded = image::decode(image, width, height, "I420")?;
                let bin = still_bin("background-image", decoded)?;
                let branch = self.core.attach(bin, &self.core.video_mixer)?;
                place(
                    &branch.pad,
                    Some(Rect {
                        x: 0,
                        y: 0,
                        width: width as i32,
                        height: height as i32,
                    }),
                    BACKGROUND_IMAGE_Z,
                    true,
                    false,
                );
                self.background_image = Some(branch);
            }
        }
        Ok(())
    }

    fn apply_logo(&mut self, logo: Option<&Image>) -> Result<(), CompositorError> {
        let Some(logo) = logo else {
            *lock(&self.logo) = None;
            return Ok(());
        };
        let (frame_w, frame_h) = (self.core.profile.width(), self.core.profile.height());
        let (w, h) = logo_size(logo.png_size(), frame_w, frame_h);
        let decoded = image::decode(logo, w, h, "BGRA")?;
        let margin = (frame_h / 30) as i32;
        let rectangle = gst_video::VideoOverlayRectangle::new_raw(
            &decoded.buffer,
            frame_w as i32 - w as i32 - margin,
            margin,
            w,
            h,
            gst_video::VideoOverlayFormatFlags::empty(),
        );
        let composition = gst_video::VideoOverlayComposition::new([&rectangle])?;
        *lock(&self.logo) = Some(composition);
        Ok(())
    }

    /// Takes every source off the stage (their feeders stop).
    pub fn clear(&mut self) {
        for slot in self.slots.drain(..) {
            slot.remove();
        }
    }
}

/// The logo's size: at most 16 % of the frame's width and 14 % of its
/// height, keeping the image's aspect ratio when it is known.
fn logo_size(image: Option<(u32, u32)>, frame_w: u32, frame_h: u32) -> (u32, u32) {
    let (box_w, box_h) = (frame_w * 16 / 100, frame_h * 14 / 100);
    let Some((w, h)) = image else {
        return (box_w, box_h);
    };
    let scale = f64::min(box_w as f64 / w as f64, box_h as f64 / h as f64);
    let even = |v: f64| ((v as u32) & !1).max(2);
    (even(w as f64 * scale), even(h as f64 * scale))
}

/// How fast the ticker moves: an eighth of the frame width per second.
const TICKER_SPEED_PER_WIDTH: f64 = 1.0 / 8.0;

impl Ticker {
    fn build(core: &Core, rect: Rect) -> Result<Self, CompositorError> {
        let (bin, last) = solid_bin_at("ticker", rect.width, rect.height, 0xFF10_1418, MOVING_FPS)?;
        let font_px = (rect.height * 11 / 20).max(8);
        let overlay = gst::ElementFactory::make("textoverlay")
            .property_from_str("valignment", "center")
            .property_from_str("halignment", "left")
            .property_from_str("wrap-mode", "none")
            .property("xpad", 0i32)
            .property("auto-resize", false)
            .property("font-desc", format!("Sans {font_px}px"))
            .property("text", "")
            .build()?;
        bin.add(&overlay)?;
        last.link(&overlay)?;
        ghost_src(&bin, &overlay)?;

        // Each frame places the text by its own timestamp: in from the
        // right edge, out past the left, then again.
        let chars = Arc::new(AtomicUsize::new(0));
        let (width, speed) = (
            f64::from(rect.width),
            f64::from(rect.width) * TICKER_SPEED_PER_WIDTH,
        );
        let glyph = f64::from(font_px) * 0.6;
        let moving = overlay.downgrade();
        let length = chars.clone();
        if let Some(pad) = overlay.static_pad("video_sink") {
            pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                let (Some(overlay), Some(pts)) =
                    (moving.upgrade(), info.buffer().and_then(|b| b.pts()))
                else {
                    return gst::PadProbeReturn::Ok;
                };
                let lap = width + glyph * length.load(Ordering::Relaxed) as f64;
                let travelled = (pts.nseconds() as f64 / 1e9 * speed) % lap;
                overlay.set_property("deltax", (width - travelled) as i32);
                gst::PadProbeReturn::Ok
            });
        }
        let branch = core.attach(bin, &core.video_mixer)?;
        place(&branch.pad, Some(rect), TICKER_Z, false, false);
        Ok(Self {
            branch,
            text: overlay,
            rect,
            chars,
        })
    }
}

impl Banner {
    /// The bar in `argb` with `text` on it, attached hidden at `rect`.
    fn build(core: &Core, rect: Rect, argb: u32, text: &str) -> Result<Self, CompositorError> {
        let (bin, last) = solid_bin("banner", rect.width, rect.height, argb)?;
        let overlay = gst::ElementFactory::make("textoverlay")
            .property_from_str("valignment", "center")
            .property_from_str("halignment", "left")
            .property("xpad", rect.width / 32)
            .property("auto-resize", false)
            .property(
                "font-desc",
                format!("Sans Bold {}", (rect.height * 2 / 5).max(8)),
            )
            .property("text", text)
            .build()?;
        bin.add(&overlay)?;
        last.link(&overlay)?;
        ghost_src(&bin, &overlay)?;
        let branch = core.attach(bin, &core.video_mixer)?;
        place(&branch.pad, Some(rect), BANNER_Z, false, false);
        Ok(Self {
            branch,
            text: overlay,
            rect,
        })
    }
}

/// The full-frame background colour, attached.
fn background_branch(core: &Core, argb: u32) -> Result<Branch, CompositorError> {
    let (width, height) = (core.profile.width() as i32, core.profile.height() as i32);
    let (bin, last) = solid_bin("background", width, height, argb)?;
    ghost_src(&bin, &last)?;
    let branch = core.attach(bin, &core.video_mixer)?;
    place(
        &branch.pad,
        Some(Rect {
            x: 0,
            y: 0,
            width,
            height,
        }),
        BACKGROUND_Z,
        true,
        false,
    );
    Ok(branch)
}

/// A live solid colour `argb` at `width` x `height`. Returns the bin and its
/// last element, for the caller to extend or expose.
///
/// The colour is fixed for the bin's life: videotestsrc in GStreamer 1.22
/// keeps a rendered frame for solid patterns and frees it when
/// `foreground-color` is set, without stopping its streaming thread, which
/// may be copying from it at that moment (a crash under quick colour
/// changes). A new colour is a new bin.
fn solid_bin(
    prefix: &str,
    width: i32,
    height: i32,
    argb: u32,
) -> Result<(gst::Bin, gst::Element), CompositorError> {
    solid_bin_at(prefix, width, height, argb, STATIC_FPS)
}

/// [`solid_bin`] at `fps` frames a second, for layers that move.
fn solid_bin_at(
    prefix: &str,
    width: i32,
    height: i32,
    argb: u32,
    fps: i32,
) -> Result<(gst::Bin, gst::Element), CompositorError> {
    let bin = gst::Bin::with_name(&unique(prefix));
    let source = gst::ElementFactory::make("videotestsrc")
        .property("is-live", true)
        .property_from_str("pattern", "solid-color")
        .property("foreground-color", argb)
        .build()?;
    let caps = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", width)
                .field("height", height)
                .field("framerate", gst::Fraction::new(fps, 1))
                .build(),
        )
        .build()?;
    bin.add_many([&source, &caps])?;
    source.link(&caps)?;
    Ok((bin, caps))
}

/// Live silence in the program's format.
fn silence_bin() -> Result<gst::Bin, CompositorError> {
    let bin = gst::Bin::with_name("silence");
    let source = gst::ElementFactory::make("audiotestsrc")
        .property("is-live", true)
        .property_from_str("wave", "silence")
        .build()?;
    let caps = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("audio/x-raw")
                .field("rate", AUDIO_RATE as i32)
                .field("channels", AUDIO_CHANNELS as i32)
                .build(),
        )
        .build()?;
    bin.add_many([&source, &caps])?;
    source.link(&caps)?;
    ghost_src(&bin, &caps)?;
    Ok(bin)
}

/// A decoded still image repeated live.
fn still_bin(prefix: &str, decoded: image::Decoded) -> Result<gst::Bin, CompositorError> {
    let bin = gst::Bin::with_name(&unique(prefix));
    let source = gst_app::AppSrc::builder()
        .caps(&decoded.caps)
        .format(gst::Format::Time)
        .build();
    let freeze = gst::ElementFactory::make("imagefreeze")
        .property("is-live", true)
        .build()?;
    let rate = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("framerate", gst::Fraction::new(STATIC_FPS, 1))
                .build(),
        )
        .build()?;
    bin.add_many([source.upcast_ref(), &freeze, &rate])?;
    gst::Element::link_many([source.upcast_ref(), &freeze, &rate])?;
    ghost_src(&bin, &rate)?;
    // Queued now, pushed once the branch plays; imagefreeze repeats it.
    source
        .push_buffer(decoded.buffer)
        .map_err(|e| CompositorError::Pipeline(e.to_string()))?;
    let _ = source.end_of_stream();
    Ok(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logos_keep_their_aspect_inside_the_corner_box() {
        assert_eq!(logo_size(Some((400, 100)), 1280, 720), (204, 50));
        assert_eq!(logo_size(Some((100, 100)), 1280, 720), (100, 100));
        assert_eq!(logo_size(None, 1280, 720), (204, 100));
        let (w, h) = logo_size(Some((1, 1000)), 1920, 1080);
        assert!(w >= 2 && h <= 151);
    }
}
