//! The media mesh shared by BuildStream edges and origins.
//!
//! Media moves between nodes as *tracks*: a source's `video` or `audio`, or the
//! origin's `program`. A track carries [`Frame`]s, one encoded frame each, in
//! groups that start at a keyframe; every frame points at the [`TrackConfig`]
//! it was encoded with, so a change of resolution or codec is visible to every
//! consumer at the frame where it happens.
//!
//! [`Tracks`] is the in-process registry a node publishes into and serves from.
//! The QUIC transport (Media over QUIC) carries the same tracks between nodes:
//!
//! - every node has a [`NodeIdentity`], a self-signed certificate that peers
//!   pin by its [`CertFingerprint`];
//! - a [`MeshServer`] answers SUBSCRIBE from its node's [`Tracks`];
//! - a [`MeshClient`] opens a [`MeshSession`] to a server and subscribes to
//!   its tracks, receiving the same [`TrackConsumer`] the local registry
//!   hands out.
//!
//! Sessions are MoQ Transport (draft 18, as moq-transport 0.17 implements
//! it) over raw QUIC with ALPN [`ALPN`] (`moqt-18`). A subscription's
//! namespace is `studio/{studio}/{source}` and its track name `video`,
//! `audio`, `screen` or `program`; [`object`] documents how frames become
//! MoQ groups and objects.

#![warn(missing_docs)]

mod client;
mod group_order;
mod identity;
mod media;
mod name;
pub mod net;
pub mod object;
mod server;
mod tls;
mod track;

pub use client::{MeshClient, MeshError, MeshSession};
pub use identity::{CertFingerprint, FingerprintError, IdentityError, NodeIdentity};
pub use media::{Codec, Frame, TrackConfig};
pub use name::{is_valid_part, NameError, TrackName};
pub use server::{MeshServer, ServerError};
pub use tls::{AllowedPeers, TlsError, ALPN};
pub use track::{KeyframeRequests, TrackConsumer, TrackProducer, Tracks, WriteError};
