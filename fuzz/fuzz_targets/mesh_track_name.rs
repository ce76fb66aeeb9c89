//! `buildstream_mesh::TrackName::parse` on arbitrary namespaces and track
//! names, as they arrive in a MoQ SUBSCRIBE.
//!
//! Input: the namespace, a zero byte, the track name. A parsed name must
//! print back to the same namespace and track.

#![no_main]

use buildstream_mesh::TrackName;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (namespace, track) = text.split_once('\0').unwrap_or((text, ""));
    if let Ok(name) = TrackName::parse(namespace, track) {
        assert_eq!(name.namespace(), namespace);
        assert_eq!(name.track(), track);
        assert_eq!(TrackName::parse(&name.namespace(), name.track()), Ok(name));
    }
});
