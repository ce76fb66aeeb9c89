//! Where the origin gets a source's tracks from.
//!
//! The compositor only needs "give me a consumer for this track, if it is
//! live". Locally that is the in-process [`Tracks`] registry; across nodes it
//! is a mesh session, which implements the same trait elsewhere.

use std::future::Future;
use std::pin::Pin;

use buildstream_mesh::{TrackConsumer, TrackName, Tracks};

/// A boxed, sendable future, as returned by [`TrackSource::subscribe`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Something the origin can subscribe to tracks from.
///
/// `subscribe` resolves to `None` when the track is not live right now; the
/// compositor then shows a placeholder and asks again a little later, so an
/// implementation should answer promptly rather than wait for the track.
pub trait TrackSource: Send + Sync + 'static {
    /// Subscribes to `name`, starting at its newest keyframe group.
    fn subscribe(&self, name: &TrackName) -> BoxFuture<'_, Option<TrackConsumer>>;
}

impl TrackSource for Tracks {
    fn subscribe(&self, name: &TrackName) -> BoxFuture<'_, Option<TrackConsumer>> {
        let consumer = Tracks::subscribe(self, name);
        Box::pin(std::future::ready(consumer))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use buildstream_mesh::{Codec, Frame, TrackConfig};
    use bytes::Bytes;

    use super::*;

    #[tokio::test]
    async fn local_registry_serves_live_tracks_only() {
        let tracks = Tracks::new();
        let name = TrackName::new("studio1", "alice", "video").unwrap();
        let source: Arc<dyn TrackSource> = Arc::new(tracks.clone());
        assert!(source.subscribe(&name).await.is_none());

        let producer = tracks.publish(name.clone());
        producer
            .write(Frame {
                timestamp_us: 0,
                composition_offset_us: 0,
                keyframe: true,
                payload: Bytes::from_static(b"x"),
                config: Arc::new(TrackConfig {
                    codec: Codec::H264,
                    description: Bytes::new(),
                    width: 0,
                    height: 0,
                    sample_rate: 0,
                    channels: 0,
                }),
            })
            .unwrap();
        let mut consumer = source.subscribe(&name).await.unwrap();
        assert!(consumer.next().await.unwrap().keyframe);
    }
}
