//! The origin's RTMP publisher (`buildstream_origin::rtmp::Publisher`) on
//! arbitrary server responses: the chunk stream after the handshake, as
//! records (see the crate docs), one per read from the socket.

#![no_main]

use buildstream_fuzz::records;
use buildstream_origin::rtmp::{ProgramInfo, PublishTarget, Publisher};
use libfuzzer_sys::fuzz_target;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};

fuzz_target!(|data: &[u8]| {
    let mut publisher = Publisher::new(target(), info()).expect("a publisher starts");
    handshake(&mut publisher);
    for read in records(data) {
        if publisher.receive(read).is_err() {
            return;
        }
        publisher.take_outbound();
    }
    if publisher.finish().is_ok() {
        publisher.take_outbound();
    }
});

/// Answers the publisher's handshake as a server, leaving it connecting.
fn handshake(publisher: &mut Publisher) {
    let mut server = Handshake::new(PeerType::Server);
    let c0c1 = publisher.take_outbound();
    let Ok(HandshakeProcessResult::InProgress { response_bytes }) = server.process_bytes(&c0c1)
    else {
        panic!("the server handshake does not take the publisher's C0+C1");
    };
    publisher
        .receive(&response_bytes)
        .expect("the publisher takes S0+S1+S2");
    let c2_and_connect = publisher.take_outbound();
    assert!(matches!(
        server.process_bytes(&c2_and_connect),
        Ok(HandshakeProcessResult::Completed { .. })
    ));
}

fn target() -> PublishTarget {
    PublishTarget {
        app: "live".to_owned(),
        tc_url: "rtmp://127.0.0.1/live".to_owned(),
        stream_key: "fuzz-key".to_owned(),
    }
}

fn info() -> ProgramInfo {
    ProgramInfo {
        width: 1280,
        height: 720,
        framerate: 30,
        video_bitrate_kbps: 2500,
        audio_bitrate_kbps: 128,
        audio_sample_rate: 48_000,
        audio_channels: 2,
    }
}
