//! Decoding a PNG or JPEG into one raw frame, at the size it is shown.
//!
//! Images are decoded once, when the scene changes, by a short helper
//! pipeline; the program pipeline then only ever sees raw frames. A broken
//! image is an error for the scene update instead of a failure later.

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::{CompositorError, HELPER_TIMEOUT};
use crate::scene::{Image, ImageFormat};

/// One decoded frame and its caps.
pub(crate) struct Decoded {
    pub buffer: gst::Buffer,
    pub caps: gst::Caps,
}

/// Decodes `image` scaled to `width` x `height` in `format` (a raw video
/// format name such as `I420` or `BGRA`). The buffer carries a video meta.
pub(crate) fn decode(
    image: &Image,
    width: u32,
    height: u32,
    format: &str,
) -> Result<Decoded, CompositorError> {
    let decoder = match image.format() {
        ImageFormat::Png => "pngdec",
        ImageFormat::Jpeg => "jpegdec",
    };
    let source = gst_app::AppSrc::builder()
        .caps(&gst::Caps::new_empty_simple(match image.format() {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
        }))
        .format(gst::Format::Time)
        .build();
    let sink = gst_app::AppSink::builder()
        .caps(
            &gst::Caps::builder("video/x-raw")
                .field("format", format)
                .field("width", width as i32)
                .field("height", height as i32)
                .build(),
        )
        .sync(false)
        .build();
    let decode = gst::ElementFactory::make(decoder).build()?;
    let convert = gst::ElementFactory::make("videoconvert").build()?;
    let scale = gst::ElementFactory::make("videoscale").build()?;
    let pipeline = gst::Pipeline::new();
    pipeline.add_many([
        source.upcast_ref(),
        &decode,
        &convert,
        &scale,
        sink.upcast_ref(),
    ])?;
    gst::Element::link_many([
        source.upcast_ref(),
        &decode,
        &convert,
        &scale,
        sink.upcast_ref(),
    ])?;

    let result = (|| {
        pipeline.set_state(gst::State::Playing)?;
        let mut buffer = gst::Buffer::from_slice(image.bytes().clone());
        buffer
            .get_mut()
            .ok_or_else(|| CompositorError::Image("buffer not writable".into()))?
            .set_pts(gst::ClockTime::ZERO);
        source
            .push_buffer(buffer)
            .map_err(|e| CompositorError::Image(e.to_string()))?;
        let _ = source.end_of_stream();
        match sink.try_pull_sample(HELPER_TIMEOUT) {
            Some(sample) => Ok(sample),
            None => {
                let bus_error = pipeline.bus().and_then(|bus| {
                    bus.pop_filtered(&[gst::MessageType::Error])
                        .map(|m| match m.view() {
                            gst::MessageView::Error(e) => e.error().to_string(),
                            _ => String::new(),
                        })
                });
                Err(CompositorError::Image(
                    bus_error.unwrap_or_else(|| "decoder produced nothing".into()),
                ))
            }
        }
    })();
    let _ = pipeline.set_state(gst::State::Null);
    let sample = result?;

    let caps = sample
        .caps_owned()
        .ok_or_else(|| CompositorError::Image("decoded frame has no caps".into()))?;
    let info = gst_video::VideoInfo::from_caps(&caps)
        .map_err(|e| CompositorError::Image(e.to_string()))?;
    let mut buffer = sample
        .buffer_owned()
        .ok_or_else(|| CompositorError::Image("no decoded frame".into()))?;
    {
        // Overlay rectangles need a video meta to know the layout; the
        // decoder's buffer is ours alone, so adding one costs no copy.
        let buffer = buffer.make_mut();
        buffer.set_pts(gst::ClockTime::NONE);
        if buffer.meta::<gst_video::VideoMeta>().is_none() {
            gst_video::VideoMeta::add_full(
                buffer,
                gst_video::VideoFrameFlags::empty(),
                info.format(),
                info.width(),
                info.height(),
                info.offset(),
                info.stride(),
            )
            .map_err(|e| CompositorError::Image(e.to_string()))?;
        }
    }
    Ok(Decoded { buffer, caps })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use bytes::Bytes;

    use super::*;

    /// 2x1 PNG: one opaque red pixel, one fully transparent pixel.
    const PNG_RED_CLEAR: &str = concat!(
        "iVBORw0KGgoAAAANSUhEUgAAAAIAAAABCAYAAAD0In+KAAAAD0lEQVR4nGP4z8AARAwM",
        "AAz8Af9c/RSVAAAAAElFTkSuQmCC"
    );

    fn image(b64: &str) -> Image {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        Image::from_bytes(Bytes::from(bytes)).unwrap()
    }

    #[test]
    fn decodes_and_scales_with_alpha() {
        gst::init().unwrap();
        let decoded = decode(&image(PNG_RED_CLEAR), 4, 2, "BGRA").unwrap();
        let info = gst_video::VideoInfo::from_caps(&decoded.caps).unwrap();
        assert_eq!((info.width(), info.height()), (4, 2));
        assert!(decoded.buffer.meta::<gst_video::VideoMeta>().is_some());
        let map = decoded.buffer.map_readable().unwrap();
        // Leftmost pixel: opaque red (B, G, R, A); rightmost: transparent.
        assert_eq!(&map[0..4], &[0, 0, 255, 255]);
        let last = info.stride()[0] as usize - 4;
        assert_eq!(map[last + 3], 0);
    }

    #[test]
    fn a_corrupt_image_is_an_error() {
        gst::init().unwrap();
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(PNG_RED_CLEAR)
            .unwrap();
        bytes.truncate(30);
        let broken = Image::from_bytes(Bytes::from(bytes)).unwrap();
        assert!(matches!(
            decode(&broken, 4, 2, "BGRA"),
            Err(CompositorError::Image(_))
        ));
    }
}
