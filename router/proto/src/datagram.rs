//! The UDP datagrams between nodes.
//!
//! ```text
//! HandshakeInit      0:type=1  1:pattern (1 IK, 2 XX)  2..4:0  4..8:sender index  8..:noise
//! HandshakeResponse  0:type=2  1..4:0  4..8:sender index  8..12:receiver index  12..:noise
//! HandshakeFinal     0:type=3  1..4:0  4..8:sender index  8..12:receiver index  12..:noise
//! Data               0:type=4  1..4:0  4..8:receiver index  8..16:counter  16..:sealed payload
//! ```
//!
//! Indices are random per-session numbers chosen by their owner, so a receiver finds its
//! state with one lookup and an observer cannot link sessions to nodes. The counter of a
//! data message is the AEAD nonce; the 16-byte header is authenticated as associated data.

use crate::ParseError;

/// Type byte of a handshake initiation.
pub const TYPE_HANDSHAKE_INIT: u8 = 1;
/// Type byte of a handshake response.
pub const TYPE_HANDSHAKE_RESPONSE: u8 = 2;
/// Type byte of the third (XX only) handshake message.
pub const TYPE_HANDSHAKE_FINAL: u8 = 3;
/// Type byte of sealed data.
pub const TYPE_DATA: u8 = 4;

/// Header length of [`Datagram::HandshakeInit`].
pub const INIT_HEADER_LEN: usize = 8;
/// Header length of [`Datagram::HandshakeResponse`] and [`Datagram::HandshakeFinal`].
pub const REPLY_HEADER_LEN: usize = 12;
/// Header length of [`Datagram::Data`].
pub const DATA_HEADER_LEN: usize = 16;

/// Which Noise pattern an initiation starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    /// `Noise_IKpsk2`: the initiator knows the responder's static key.
    Ik = 1,
    /// `Noise_XXpsk0`: first contact with a bare address.
    Xx = 2,
}

impl Pattern {
    fn from_byte(b: u8) -> Result<Self, ParseError> {
        match b {
            1 => Ok(Self::Ik),
            2 => Ok(Self::Xx),
            _ => Err(ParseError::Malformed("unknown handshake pattern")),
        }
    }
}

/// A parsed datagram borrowing the buffer it came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// First handshake message.
    HandshakeInit {
        /// Pattern the initiator chose.
        pattern: Pattern,
        /// Initiator's index for this handshake.
        sender: u32,
        /// The Noise message.
        noise: &'a [u8],
    },
    /// Second handshake message.
    HandshakeResponse {
        /// Responder's index.
        sender: u32,
        /// The initiator's index it answers.
        receiver: u32,
        /// The Noise message.
        noise: &'a [u8],
    },
    /// Third handshake message (XX).
    HandshakeFinal {
        /// Initiator's index.
        sender: u32,
        /// Responder's index it answers.
        receiver: u32,
        /// The Noise message.
        noise: &'a [u8],
    },
    /// Sealed data.
    Data {
        /// The receiver's session index.
        receiver: u32,
        /// Nonce counter.
        counter: u64,
        /// The 16-byte header, authenticated as associated data.
        header: &'a [u8; DATA_HEADER_LEN],
        /// Ciphertext and tag.
        sealed: &'a [u8],
    },
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn need(buf: &[u8], need: usize) -> Result<(), ParseError> {
    if buf.len() < need {
        Err(ParseError::Truncated {
            len: buf.len(),
            need,
        })
    } else {
        Ok(())
    }
}

fn reserved_zero(bytes: &[u8]) -> Result<(), ParseError> {
    if bytes.iter().all(|&b| b == 0) {
        Ok(())
    } else {
        Err(ParseError::Malformed("reserved bytes are not zero"))
    }
}

impl<'a> Datagram<'a> {
    /// Parses one datagram.
    pub fn parse(buf: &'a [u8]) -> Result<Self, ParseError> {
        need(buf, 1)?;
        match buf[0] {
            TYPE_HANDSHAKE_INIT => {
                need(buf, INIT_HEADER_LEN)?;
                reserved_zero(&buf[2..4])?;
                Ok(Self::HandshakeInit {
                    pattern: Pattern::from_byte(buf[1])?,
                    sender: u32_at(buf, 4),
                    noise: &buf[INIT_HEADER_LEN..],
                })
            }
            t @ (TYPE_HANDSHAKE_RESPONSE | TYPE_HANDSHAKE_FINAL) => {
                need(buf, REPLY_HEADER_LEN)?;
                reserved_zero(&buf[1..4])?;
                let (sender, receiver) = (u32_at(buf, 4), u32_at(buf, 8));
                let noise = &buf[REPLY_HEADER_LEN..];
                Ok(if t == TYPE_HANDSHAKE_RESPONSE {
                    Self::HandshakeResponse {
                        sender,
                        receiver,
                        noise,
                    }
                } else {
                    Self::HandshakeFinal {
                        sender,
                        receiver,
                        noise,
                    }
                })
            }
            TYPE_DATA => {
                need(buf, DATA_HEADER_LEN)?;
                reserved_zero(&buf[1..4])?;
                let (header, sealed) = buf.split_at(DATA_HEADER_LEN);
                let header: &[u8; DATA_HEADER_LEN] = header
                    .try_into()
                    .map_err(|_| ParseError::Malformed("data header"))?;
                let mut c = [0u8; 8];
                c.copy_from_slice(&header[8..16]);
                Ok(Self::Data {
                    receiver: u32_at(buf, 4),
                    counter: u64::from_le_bytes(c),
                    header,
                    sealed,
                })
            }
            other => Err(ParseError::UnknownType(other)),
        }
    }

    /// The type byte's name, for counters and traces.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::HandshakeInit { .. } => "handshake_init",
            Self::HandshakeResponse { .. } => "handshake_response",
            Self::HandshakeFinal { .. } => "handshake_final",
            Self::Data { .. } => "data",
        }
    }
}

/// Writes a handshake initiation header into `out[..INIT_HEADER_LEN]`.
/// The Noise message goes at `out[INIT_HEADER_LEN..]`.
pub fn emit_init_header(out: &mut [u8; INIT_HEADER_LEN], pattern: Pattern, sender: u32) {
    out[0] = TYPE_HANDSHAKE_INIT;
    out[1] = pattern as u8;
    out[2..4].fill(0);
    out[4..8].copy_from_slice(&sender.to_le_bytes());
}

/// Writes a response (`final_ == false`) or final (`final_ == true`) header.
pub fn emit_reply_header(
    out: &mut [u8; REPLY_HEADER_LEN],
    final_: bool,
    sender: u32,
    receiver: u32,
) {
    out[0] = if final_ {
        TYPE_HANDSHAKE_FINAL
    } else {
        TYPE_HANDSHAKE_RESPONSE
    };
    out[1..4].fill(0);
    out[4..8].copy_from_slice(&sender.to_le_bytes());
    out[8..12].copy_from_slice(&receiver.to_le_bytes());
}

/// Writes a data header; the sealed payload follows at `DATA_HEADER_LEN`.
pub fn emit_data_header(out: &mut [u8; DATA_HEADER_LEN], receiver: u32, counter: u64) {
    out[0] = TYPE_DATA;
    out[1..4].fill(0);
    out[4..8].copy_from_slice(&receiver.to_le_bytes());
    out[8..16].copy_from_slice(&counter.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_round_trip() {
        let mut buf = vec![0u8; INIT_HEADER_LEN + 5];
        let hdr: &mut [u8; INIT_HEADER_LEN] = (&mut buf[..INIT_HEADER_LEN]).try_into().unwrap();
        emit_init_header(hdr, Pattern::Xx, 0xdead_beef);
        buf[INIT_HEADER_LEN..].copy_from_slice(b"noise");
        assert_eq!(
            Datagram::parse(&buf).unwrap(),
            Datagram::HandshakeInit {
                pattern: Pattern::Xx,
                sender: 0xdead_beef,
                noise: b"noise"
            }
        );
    }

    #[test]
    fn reply_round_trip() {
        for final_ in [false, true] {
            let mut buf = vec![0u8; REPLY_HEADER_LEN + 2];
            let hdr: &mut [u8; REPLY_HEADER_LEN] =
                (&mut buf[..REPLY_HEADER_LEN]).try_into().unwrap();
            emit_reply_header(hdr, final_, 7, 9);
            buf[REPLY_HEADER_LEN..].copy_from_slice(b"xy");
            let d = Datagram::parse(&buf).unwrap();
            let expect = if final_ {
                Datagram::HandshakeFinal {
                    sender: 7,
                    receiver: 9,
                    noise: b"xy",
                }
            } else {
                Datagram::HandshakeResponse {
                    sender: 7,
                    receiver: 9,
                    noise: b"xy",
                }
            };
            assert_eq!(d, expect);
        }
    }

    #[test]
    fn data_round_trip() {
        let mut buf = vec![0u8; DATA_HEADER_LEN + 20];
        let hdr: &mut [u8; DATA_HEADER_LEN] = (&mut buf[..DATA_HEADER_LEN]).try_into().unwrap();
        emit_data_header(hdr, 42, u64::MAX - 1);
        match Datagram::parse(&buf).unwrap() {
            Datagram::Data {
                receiver,
                counter,
                sealed,
                header,
            } => {
                assert_eq!(receiver, 42);
                assert_eq!(counter, u64::MAX - 1);
                assert_eq!(sealed.len(), 20);
                assert_eq!(&header[..], &buf[..DATA_HEADER_LEN]);
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut buf = [0u8; DATA_HEADER_LEN];
        let hdr: &mut [u8; DATA_HEADER_LEN] = (&mut buf[..]).try_into().unwrap();
        emit_data_header(hdr, 1, 2);
        for len in 0..DATA_HEADER_LEN {
            assert!(
                matches!(
                    Datagram::parse(&buf[..len]),
                    Err(ParseError::Truncated { .. })
                ),
                "len {len}"
            );
        }
        let mut init = [0u8; INIT_HEADER_LEN];
        emit_init_header(&mut init, Pattern::Ik, 3);
        for len in 1..INIT_HEADER_LEN {
            assert!(Datagram::parse(&init[..len]).is_err());
        }
    }

    #[test]
    fn rejects_unknown_type_reserved_bits_and_pattern() {
        assert_eq!(
            Datagram::parse(&[9, 0, 0, 0]),
            Err(ParseError::UnknownType(9))
        );
        let mut buf = [0u8; DATA_HEADER_LEN];
        emit_data_header(&mut buf, 1, 2);
        buf[2] = 1;
        assert!(matches!(
            Datagram::parse(&buf),
            Err(ParseError::Malformed(_))
        ));
        let mut init = [0u8; INIT_HEADER_LEN];
        emit_init_header(&mut init, Pattern::Ik, 3);
        init[1] = 7;
        assert!(matches!(
            Datagram::parse(&init),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep; the fuzz target covers the rest.
        let mut x: u32 = 0x1234_5678;
        for len in 0..64 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    (x % 6) as u8
                })
                .collect();
            let _ = Datagram::parse(&buf);
        }
    }
}
