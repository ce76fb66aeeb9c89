//! The media mesh shared by BuildStream edges and origins.
//!
//! Media moves between nodes as *tracks*: a source's `video` or `audio`, or the
//! origin's `program`. A track carries [`Frame`]s, one encoded frame each, in
//! groups that start at a keyframe; every frame points at the [`TrackConfig`]
//! it was encoded with, so a change of resolution or codec is visible to every
//! consumer at the frame where it happens.
//!
//! [`Tracks`] is the in-process registry a node publishes into and serves from.
//! The QUIC transport (Media over QUIC) carries the same tracks between nodes.

#![warn(missing_docs)]

mod media;
mod name;
mod track;

pub use media::{Codec, Frame, TrackConfig};
pub use name::{NameError, TrackName};
pub use track::{TrackConsumer, TrackProducer, Tracks, WriteError};
