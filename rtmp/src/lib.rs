//! Reading RTMP from a peer that may be hostile or broken, for both ends
//! BuildStream speaks: the edge's ingest (encoders publishing to us) and
//! the origin's destinations (servers we publish to).
//!
//! [`chunk::ChunkReader`] reassembles inbound chunk streams into messages
//! with every size bounded; [`amf::decode`] decodes AMF0 without unbounded
//! recursion. rml_rtmp's own readers were measured unfit for input nobody
//! vouches for: they panic on crafted extended timestamps, short commands
//! and new headers in the middle of a message, mix interleaved chunk
//! streams, and recurse once per nested AMF0 object. Writing (handshake,
//! chunk serializer, AMF0 encoding) stays with rml_rtmp, which only ever
//! sees our own messages there.

#![warn(missing_docs)]

pub mod amf;
pub mod chunk;
