//! Raw-byte entry points into the private RTMP protocol core, for the fuzz
//! targets in `fuzz/`. Not part of the crate's API: hidden from the docs
//! and free to change with the code it exposes. Each item is a thin wrapper
//! that adds no logic of its own, so a crash found through it is a crash of
//! the wrapped code.

use buildstream_mesh::Tracks;

use crate::authority::SourceGrant;
use crate::session;
use crate::session::{Refusal, SessionEvent};
use crate::source::SourcePublisher;

/// One RTMP connection's protocol state as the ingest drives it: the
/// session, and the tracks an accepted publish feeds.
pub struct Ingest {
    session: session::Session,
    tracks: Tracks,
    source: Option<SourcePublisher>,
}

impl Default for Ingest {
    fn default() -> Self {
        Self::new()
    }
}

impl Ingest {
    /// A connection waiting for the client's handshake.
    pub fn new() -> Self {
        Self {
            session: session::Session::new(),
            tracks: Tracks::new(),
            source: None,
        }
    }

    /// Feeds bytes from the peer and acts on the resulting events as the
    /// ingest does; publish requests are accepted if `accept`, otherwise
    /// refused. An error is what would close the connection.
    pub fn handle_input(&mut self, bytes: &[u8], accept: bool) -> Result<(), String> {
        self.session
            .handle_input(bytes)
            .map_err(|error| error.to_string())?;
        while let Some(event) = self.session.poll_event() {
            self.handle_event(event, accept)?;
        }
        Ok(())
    }

    /// Bytes the server would send, in order.
    pub fn take_transmit(&mut self) -> Option<Vec<u8>> {
        self.session.take_transmit()
    }

    /// Whether a refusal went out and the connection is closing.
    pub fn is_closing(&self) -> bool {
        self.session.is_closing()
    }

    /// Whether a publish was accepted and is still going.
    pub fn is_publishing(&self) -> bool {
        self.source.is_some()
    }

    fn handle_event(&mut self, event: SessionEvent, accept: bool) -> Result<(), String> {
        match event {
            SessionEvent::PublishRequested { .. } if accept => {
                let grant = SourceGrant {
                    studio: "fuzz".to_owned(),
                    source: "rtmp".to_owned(),
                };
                let source = SourcePublisher::new(self.tracks.clone(), &grant)
                    .map_err(|error| error.to_string())?;
                if self
                    .session
                    .accept_publish()
                    .map_err(|error| error.to_string())?
                {
                    self.source = Some(source);
                }
                Ok(())
            }
            SessionEvent::PublishRequested { .. } => self
                .session
                .refuse_publish(Refusal::BadKey)
                .map_err(|error| error.to_string()),
            SessionEvent::Media(media) => match &mut self.source {
                Some(source) => source.push(media).map_err(|error| error.to_string()),
                None => Ok(()),
            },
            SessionEvent::PublishFinished => {
                self.source = None;
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrappers_reach_the_code_they_wrap() {
        // Anything but version 3 fails the handshake.
        assert!(Ingest::new().handle_input(&[6; 1537], true).is_err());
    }
}
