use std::fmt;

/// Why a track name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// The namespace does not have the form `studio/{studio}/{source}`.
    #[error("namespace must be studio/{{studio}}/{{source}}")]
    Namespace,
    /// A part is empty, too long or has characters other than `[A-Za-z0-9_-]`.
    #[error("name parts must be 1-64 characters of [A-Za-z0-9_-]")]
    Part,
}

/// A track's full name: namespace `studio/{studio}/{source}` and track
/// (`video`, `audio`, `screen` or `program`). Parsed once, trusted after.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackName {
    studio: String,
    source: String,
    track: String,
}

impl TrackName {
    /// Builds a name from its parts, checking each.
    pub fn new(studio: &str, source: &str, track: &str) -> Result<Self, NameError> {
        for part in [studio, source, track] {
            check_part(part)?;
        }
        Ok(Self {
            studio: studio.to_owned(),
            source: source.to_owned(),
            track: track.to_owned(),
        })
    }

    /// Parses a namespace (`studio/{studio}/{source}`) and a track name.
    pub fn parse(namespace: &str, track: &str) -> Result<Self, NameError> {
        let mut parts = namespace.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("studio"), Some(studio), Some(source), None) => Self::new(studio, source, track),
            _ => Err(NameError::Namespace),
        }
    }

    /// The namespace, `studio/{studio}/{source}`.
    pub fn namespace(&self) -> String {
        format!("studio/{}/{}", self.studio, self.source)
    }

    /// The studio part.
    pub fn studio(&self) -> &str {
        &self.studio
    }

    /// The source part (`program` for the origin's output).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The track part: `video`, `audio`, `screen` or `program`.
    pub fn track(&self) -> &str {
        &self.track
    }
}

impl fmt::Display for TrackName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "studio/{}/{}/{}", self.studio, self.source, self.track)
    }
}

/// Whether `part` may be one part of a track name (a studio, source or
/// track id): 1-64 characters of `[A-Za-z0-9_-]`. Ids that end up in track
/// names are checked with this wherever they enter the system.
pub fn is_valid_part(part: &str) -> bool {
    !part.is_empty()
        && part.len() <= 64
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn check_part(part: &str) -> Result<(), NameError> {
    if is_valid_part(part) {
        Ok(())
    } else {
        Err(NameError::Part)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_namespace_and_track() {
        let name = TrackName::parse("studio/abc/src-1", "video").unwrap();
        assert_eq!(name.studio(), "abc");
        assert_eq!(name.source(), "src-1");
        assert_eq!(name.namespace(), "studio/abc/src-1");
        assert_eq!(name.to_string(), "studio/abc/src-1/video");
    }

    #[test]
    fn refuses_path_tricks() {
        assert_eq!(
            TrackName::parse("studio/a/b/c", "video"),
            Err(NameError::Namespace)
        );
        assert_eq!(
            TrackName::parse("room/a/b", "video"),
            Err(NameError::Namespace)
        );
        assert_eq!(
            TrackName::parse("studio/../b", "video"),
            Err(NameError::Part)
        );
        assert_eq!(TrackName::parse("studio/a/b", ""), Err(NameError::Part));
    }
}
