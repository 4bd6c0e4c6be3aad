//! Echo request and reply: `meshctl ping`'s probes, sent inside a session like any control
//! message, so they take the path data takes (direct or through a relay) and measure it.
//!
//! ```text
//! Echo  0:type (0x04 request, 0x05 reply)  1:format version=1  2..10:probe id (big endian)
//!       10..:padding, zero, any length (a reply is as long as its request: a probe of the
//!       overlay MTU checks that full-size packets pass both ways)
//! ```
//!
//! Byte order: the probe id is **big-endian**, unlike the integers of the other formats in
//! this crate. Only its requester reads it as a number: a reply carries the request's id
//! bytes back unchanged.

use crate::ParseError;

/// Type byte of an echo request.
pub const CONTROL_ECHO_REQUEST: u8 = 0x04;
/// Type byte of an echo reply.
pub const CONTROL_ECHO_REPLY: u8 = 0x05;
/// Bytes of an echo message without padding.
pub const ECHO_HEADER_LEN: usize = 10;

const FORMAT_VERSION: u8 = 1;

/// An echo request or reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    /// A reply (else a request).
    pub reply: bool,
    /// Chosen by the requester; the reply carries it back.
    pub id: u64,
    /// Whole message length, padding included (at least [`ECHO_HEADER_LEN`]).
    pub len: usize,
}

impl Echo {
    /// Bytes [`Self::emit`] writes.
    pub fn buffer_len(&self) -> usize {
        self.len.max(ECHO_HEADER_LEN)
    }

    /// Writes the message into `out`, returns its length; `None` if `out` is too small.
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let len = self.buffer_len();
        let out = out.get_mut(..len)?;
        out[0] = if self.reply {
            CONTROL_ECHO_REPLY
        } else {
            CONTROL_ECHO_REQUEST
        };
        out[1] = FORMAT_VERSION;
        out[2..10].copy_from_slice(&self.id.to_be_bytes());
        out[10..].fill(0);
        Some(len)
    }

    /// Parses a whole echo message (type byte included).
    pub fn parse(buf: &[u8]) -> Result<Self, ParseError> {
        if buf.len() < ECHO_HEADER_LEN {
            return Err(ParseError::Truncated {
                len: buf.len(),
                need: ECHO_HEADER_LEN,
            });
        }
        let reply = match buf[0] {
            CONTROL_ECHO_REQUEST => false,
            CONTROL_ECHO_REPLY => true,
            t => return Err(ParseError::UnknownType(t)),
        };
        if buf[1] != FORMAT_VERSION {
            return Err(ParseError::Malformed("unknown echo format version"));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&buf[2..10]);
        Ok(Self {
            reply,
            id: u64::from_be_bytes(id),
            len: buf.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_padding() {
        for (reply, len) in [(false, ECHO_HEADER_LEN), (true, 1420)] {
            let e = Echo {
                reply,
                id: 0x0102_0304_0506_0708,
                len,
            };
            let mut buf = vec![0xffu8; 2000];
            let n = e.emit(&mut buf).unwrap();
            assert_eq!(n, len);
            assert_eq!(&buf[2..10], &[1, 2, 3, 4, 5, 6, 7, 8]);
            assert!(buf[10..n].iter().all(|b| *b == 0));
            assert_eq!(Echo::parse(&buf[..n]).unwrap(), e);
        }
    }

    #[test]
    fn truncated_unknown_and_too_small_buffers_are_refused() {
        let e = Echo {
            reply: false,
            id: 7,
            len: 0,
        };
        let mut buf = [0u8; ECHO_HEADER_LEN];
        assert_eq!(
            e.emit(&mut buf),
            Some(ECHO_HEADER_LEN),
            "pads up to the header"
        );
        for cut in 0..ECHO_HEADER_LEN {
            assert!(matches!(
                Echo::parse(&buf[..cut]),
                Err(ParseError::Truncated { .. })
            ));
        }
        assert!(e.emit(&mut buf[..9]).is_none());
        let mut bad = buf;
        bad[0] = 0x06;
        assert_eq!(Echo::parse(&bad), Err(ParseError::UnknownType(6)));
        bad = buf;
        bad[1] = 2;
        assert!(matches!(Echo::parse(&bad), Err(ParseError::Malformed(_))));
    }
}
