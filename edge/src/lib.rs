//! The BuildStream edge: where sources enter the mesh.
//!
//! For now that is RTMP ingest. An encoder (OBS, ffmpeg, a hardware box)
//! publishes to `rtmp://{edge}/{app}/{stream_key}`, or to
//! `rtmp://{edge}/{app}` with the key in its stream key field. The
//! [`KeyAuthority`] turns the key into a [`SourceGrant`], and the ingest
//! publishes the encoder's H.264 and AAC as the mesh tracks
//! `studio/{studio}/{source}/video` and `.../audio`.
//!
//! ```no_run
//! # async fn run() -> Result<(), buildstream_edge::IngestError> {
//! use buildstream_edge::{MemoryKeyAuthority, RtmpIngest, SourceGrant};
//! use buildstream_mesh::Tracks;
//!
//! let keys = MemoryKeyAuthority::new();
//! keys.insert("secret-key", SourceGrant { studio: "s1".into(), source: "obs".into() });
//! let tracks = Tracks::new();
//! let ingest = RtmpIngest::bind("0.0.0.0:1935".parse().unwrap(), keys, tracks.clone()).await?;
//! // ... serve tracks to the mesh ...
//! ingest.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The RTMP protocol core (session state machine and chunk reader) and the
//! [`flv`] parsers are sans-IO; only [`RtmpIngest`] touches sockets.

#![warn(missing_docs)]

mod authority;
pub mod flv;
#[doc(hidden)]
pub mod fuzzing;
mod ingest;
pub mod room;
mod session;
mod signaling;
mod source;
pub mod webrtc;
pub mod whep;
pub mod whip;

pub use authority::{AuthorizeError, KeyAuthority, MemoryKeyAuthority, SourceGrant};
pub use ingest::{IngestConfig, IngestError, RtmpIngest};
