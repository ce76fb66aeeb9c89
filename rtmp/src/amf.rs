//! AMF0 decoding of command and data messages, bounded.
//!
//! `rml_amf0::deserialize` recurses once per nested object or array, so a
//! 64 KiB command of nested objects would overflow the stack and abort the
//! whole process. [`decode`] walks the bytes first, without recursion, and
//! refuses anything nested deeper than real clients ever send.

use std::io::Cursor;

use rml_rtmp::rml_amf0::{self, Amf0DeserializationError, Amf0Value};

/// Connect objects and metadata nest two or three levels; this is plenty.
pub const MAX_DEPTH: usize = 16;

/// Why an AMF0 payload was refused.
#[derive(Debug, thiserror::Error)]
pub enum AmfError {
    /// Objects or arrays nest deeper than [`MAX_DEPTH`].
    #[error("AMF0 values nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// The values are malformed.
    #[error("malformed AMF0: {0}")]
    Malformed(#[from] Amf0DeserializationError),
}

/// Decodes a sequence of AMF0 values.
pub fn decode(bytes: &[u8]) -> Result<Vec<Amf0Value>, AmfError> {
    check_depth(bytes)?;
    Ok(rml_amf0::deserialize(&mut Cursor::new(bytes))?)
}

mod marker {
    pub(super) const NUMBER: u8 = 0x00;
    pub(super) const BOOLEAN: u8 = 0x01;
    pub(super) const STRING: u8 = 0x02;
    pub(super) const OBJECT: u8 = 0x03;
    pub(super) const NULL: u8 = 0x05;
    pub(super) const UNDEFINED: u8 = 0x06;
    pub(super) const ECMA_ARRAY: u8 = 0x08;
    pub(super) const OBJECT_END: u8 = 0x09;
    pub(super) const STRICT_ARRAY: u8 = 0x0a;
}

enum Container {
    /// Properties until an empty name and the end marker.
    Object,
    /// This many more values.
    Array(u32),
}

/// Follows the value structure exactly as `rml_amf0` reads it, counting
/// open containers. Where `rml_amf0` would stop with an error (unknown
/// marker, truncation) this stops too and leaves the error to it.
fn check_depth(bytes: &[u8]) -> Result<(), AmfError> {
    let mut reader = Reader { bytes, at: 0 };
    let mut open: Vec<Container> = Vec::new();
    loop {
        match open.last_mut() {
            None if reader.at >= bytes.len() => return Ok(()),
            None => {}
            Some(Container::Object) => {
                let Some(name_length) = reader.u16() else {
                    return Ok(());
                };
                if name_length == 0 {
                    // The end marker follows; the object is closed.
                    if reader.skip(1).is_none() {
                        return Ok(());
                    }
                    open.pop();
                    continue;
                }
                if reader.skip(usize::from(name_length)).is_none() {
                    return Ok(());
                }
            }
            Some(Container::Array(0)) => {
                open.pop();
                continue;
            }
            Some(Container::Array(remaining)) => *remaining -= 1,
        }

        let Some(value_marker) = reader.u8() else {
            return Ok(());
        };
        let fits = match value_marker {
            marker::NUMBER => reader.skip(8),
            marker::BOOLEAN => reader.skip(1),
            marker::STRING => reader.u16().and_then(|n| reader.skip(usize::from(n))),
            marker::NULL | marker::UNDEFINED => Some(()),
            marker::OBJECT => {
                open.push(Container::Object);
                Some(())
            }
            marker::ECMA_ARRAY => reader.skip(4).map(|()| open.push(Container::Object)),
            marker::STRICT_ARRAY => reader.u32().map(|n| open.push(Container::Array(n))),
            marker::OBJECT_END => match open.last() {
                // Ends a strict array early, as rml_amf0 reads it; anywhere
                // else it ends the values or is an error rml_amf0 reports.
                Some(Container::Array(_)) => {
                    open.pop();
                    Some(())
                }
                _ => return Ok(()),
            },
            _ => return Ok(()),
        };
        if fits.is_none() {
            return Ok(());
        }
        if open.len() > MAX_DEPTH {
            return Err(AmfError::TooDeep);
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, count: usize) -> Option<&[u8]> {
        let taken = self.bytes.get(self.at..self.at.checked_add(count)?)?;
        self.at += count;
        Some(taken)
    }

    fn skip(&mut self, count: usize) -> Option<()> {
        self.take(count).map(|_| ())
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn decodes_a_connect_command() {
        let mut app = HashMap::new();
        app.insert("app".to_owned(), Amf0Value::Utf8String("live".to_owned()));
        app.insert(
            "nested".to_owned(),
            Amf0Value::StrictArray(vec![
                Amf0Value::Number(1.0),
                Amf0Value::Object(HashMap::new()),
            ]),
        );
        let values = vec![
            Amf0Value::Utf8String("connect".to_owned()),
            Amf0Value::Number(1.0),
            Amf0Value::Object(app),
            Amf0Value::Null,
        ];
        let bytes = rml_amf0::serialize(&values).unwrap();
        assert_eq!(decode(&bytes).unwrap(), values);
    }

    /// Guards against a stack overflow in rml_amf0 on deeply nested input.
    #[test]
    fn refuses_deep_nesting() {
        let mut bytes = vec![marker::OBJECT];
        for _ in 0..20_000 {
            bytes.extend_from_slice(&[0, 1, b'a', marker::OBJECT]);
        }
        assert!(matches!(decode(&bytes), Err(AmfError::TooDeep)));

        let mut arrays = Vec::new();
        for _ in 0..20_000 {
            arrays.extend_from_slice(&[marker::STRICT_ARRAY, 0, 0, 0, 1]);
        }
        assert!(matches!(decode(&arrays), Err(AmfError::TooDeep)));

        let mut ecma = Vec::new();
        for _ in 0..20_000 {
            ecma.extend_from_slice(&[marker::ECMA_ARRAY, 0, 0, 0, 1, 0, 1, b'k']);
        }
        assert!(matches!(decode(&ecma), Err(AmfError::TooDeep)));
    }

    #[test]
    fn accepts_nesting_up_to_the_limit() {
        let mut bytes = Vec::new();
        for _ in 0..MAX_DEPTH {
            bytes.extend_from_slice(&[marker::STRICT_ARRAY, 0, 0, 0, 1]);
        }
        bytes.push(marker::NULL);
        assert!(decode(&bytes).is_ok());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert!(decode(&[marker::STRING, 0]).is_err());
        assert!(decode(&[0x42]).is_err());
        assert!(decode(&[marker::OBJECT, 0, 3, b'a']).is_err());
    }
}
