//! The BuildStream origin: for each live studio it reads the on-stage sources'
//! mesh tracks, composes them into the branded scene with GStreamer, encodes
//! the program once and restreams it to every RTMP/RTMPS destination.
//!
//! The pieces, from the inside out:
//!
//! - [`source`]: how the origin obtains a source's tracks ([`TrackSource`]),
//!   implemented for the local [`buildstream_mesh::Tracks`] registry.
//! - [`scene`]: the serde types a studio is described with (layout, who is on
//!   stage, banner, logo, background, brand colour, output profile), parsed
//!   and checked once at the edge.
//! - [`compositor`]: one GStreamer pipeline per live studio; scene changes
//!   apply to the playing pipeline, the encoder never restarts.
//! - [`program`]: the encoded program as FLV-ready packets and the fan-out
//!   that hands them to every destination without ever blocking the encoder.
//! - [`rtmp`] and [`flv`]: sans-IO RTMP publishing and FLV tag handling.
//! - [`destinations`]: one sender task per destination, each with its own
//!   queue and reconnect loop.
//! - [`broadcast`]: the registry of live broadcasts and the internal HTTP API
//!   the control plane drives it with.

#![warn(missing_docs)]

pub mod aac;
pub mod broadcast;
pub mod compositor;
pub mod destinations;
pub mod flv;
pub mod layout;
pub mod program;
pub mod rtmp;
pub mod scene;
pub mod source;
mod timing;

pub use broadcast::{BroadcastSpec, BroadcastStatus, Broadcasts, OriginConfig};
pub use destinations::{DestinationSpec, DestinationState, Platform};
pub use scene::{OutputProfile, Scene};
pub use source::TrackSource;
