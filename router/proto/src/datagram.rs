//! The UDP datagrams between nodes.
//!
//! ```text
//! HandshakeInit      0:type=1  1:pattern (1 IK, 2 XX)  2:version=2  3:0  4..8:sender index
//!                    8..16:timestamp (ms since the Unix epoch)  16..n-32:noise  mac1  mac2
//! HandshakeResponse  0:type=2  1:0  2:version=2  3:0  4..8:sender index  8..12:receiver index
//!                    12..n-32:noise  mac1  mac2
//! HandshakeFinal     0:type=3  (as HandshakeResponse)
//! Data               0:type=4  1..4:0  4..8:receiver index  8..16:counter  16..:sealed payload
//! CookieReply        0:type=7  1:0  2:version=2  3:0  4..8:receiver index  8..20:nonce
//!                    20..52:sealed cookie
//! ```
//!
//! Byte order: little-endian (indices, timestamp, counter).
//!
//! Indices are random per-session numbers chosen by their owner, so a receiver finds its
//! state with one lookup and an observer cannot link sessions to nodes. The counter of a
//! data message is the AEAD nonce; the 16-byte header is authenticated as associated data.
//! Every handshake message ends in two 16-byte MACs (`mac1` over all bytes before it, `mac2`
//! over all bytes before it; see `mesh_crypto::Mac1Key`), checked before any public-key work.
//! Protocol version 1 had no MACs, no timestamp and a zero byte 2; its handshake messages
//! parse as [`ParseError::Version`].

use crate::ParseError;

/// Type byte of a handshake initiation.
pub const TYPE_HANDSHAKE_INIT: u8 = 1;
/// Type byte of a handshake response.
pub const TYPE_HANDSHAKE_RESPONSE: u8 = 2;
/// Type byte of the third (XX only) handshake message.
pub const TYPE_HANDSHAKE_FINAL: u8 = 3;
/// Type byte of sealed data.
pub const TYPE_DATA: u8 = 4;
/// Type byte of a cookie reply (5 and 6 are relay frames, `crate::relay`).
pub const TYPE_COOKIE_REPLY: u8 = 7;

/// The handshake protocol version this crate speaks (byte 2 of handshake messages).
pub const HANDSHAKE_VERSION: u8 = 2;

/// Header length of [`Datagram::HandshakeInit`].
pub const INIT_HEADER_LEN: usize = 16;
/// The two MACs at the end of every handshake message.
pub const HANDSHAKE_MACS_LEN: usize = 32;
/// Length of a [`Datagram::CookieReply`].
pub const COOKIE_REPLY_LEN: usize = 52;
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
        /// When the initiator sent it, in milliseconds since the Unix epoch.
        timestamp: u64,
        /// The Noise message.
        noise: &'a [u8],
        /// mac1 and mac2.
        macs: &'a [u8; HANDSHAKE_MACS_LEN],
    },
    /// Second handshake message.
    HandshakeResponse {
        /// Responder's index.
        sender: u32,
        /// The initiator's index it answers.
        receiver: u32,
        /// The Noise message.
        noise: &'a [u8],
        /// mac1 and mac2.
        macs: &'a [u8; HANDSHAKE_MACS_LEN],
    },
    /// Third handshake message (XX).
    HandshakeFinal {
        /// Initiator's index.
        sender: u32,
        /// Responder's index it answers.
        receiver: u32,
        /// The Noise message.
        noise: &'a [u8],
        /// mac1 and mac2.
        macs: &'a [u8; HANDSHAKE_MACS_LEN],
    },
    /// A loaded node's answer to an initiation: a cookie instead of a handshake.
    CookieReply {
        /// The initiator's index of the initiation it answers.
        receiver: u32,
        /// Nonce of the sealed cookie.
        nonce: &'a [u8; 12],
        /// The cookie and its tag.
        sealed: &'a [u8; 32],
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

/// Byte 2 of a handshake message or cookie reply: the version, which must be ours.
fn handshake_version(buf: &[u8]) -> Result<(), ParseError> {
    match buf[2] {
        HANDSHAKE_VERSION => Ok(()),
        // Version 1 kept this byte zero.
        0 => Err(ParseError::Version(1)),
        v => Err(ParseError::Version(v)),
    }
}

/// Splits a handshake message after its header into the Noise part and the MACs.
fn noise_and_macs(
    buf: &[u8],
    header: usize,
) -> Result<(&[u8], &[u8; HANDSHAKE_MACS_LEN]), ParseError> {
    need(buf, header + HANDSHAKE_MACS_LEN)?;
    let (rest, macs) = buf[header..].split_at(buf.len() - header - HANDSHAKE_MACS_LEN);
    let macs = macs
        .try_into()
        .map_err(|_| ParseError::Malformed("handshake MACs"))?;
    Ok((rest, macs))
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
                need(buf, 4)?;
                handshake_version(buf)?;
                reserved_zero(&buf[3..4])?;
                let (noise, macs) = noise_and_macs(buf, INIT_HEADER_LEN)?;
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&buf[8..16]);
                Ok(Self::HandshakeInit {
                    pattern: Pattern::from_byte(buf[1])?,
                    sender: u32_at(buf, 4),
                    timestamp: u64::from_le_bytes(ts),
                    noise,
                    macs,
                })
            }
            t @ (TYPE_HANDSHAKE_RESPONSE | TYPE_HANDSHAKE_FINAL) => {
                need(buf, 4)?;
                handshake_version(buf)?;
                reserved_zero(&buf[1..2])?;
                reserved_zero(&buf[3..4])?;
                let (noise, macs) = noise_and_macs(buf, REPLY_HEADER_LEN)?;
                let (sender, receiver) = (u32_at(buf, 4), u32_at(buf, 8));
                Ok(if t == TYPE_HANDSHAKE_RESPONSE {
                    Self::HandshakeResponse {
                        sender,
                        receiver,
                        noise,
                        macs,
                    }
                } else {
                    Self::HandshakeFinal {
                        sender,
                        receiver,
                        noise,
                        macs,
                    }
                })
            }
            TYPE_COOKIE_REPLY => {
                need(buf, 4)?;
                handshake_version(buf)?;
                reserved_zero(&buf[1..2])?;
                reserved_zero(&buf[3..4])?;
                need(buf, COOKIE_REPLY_LEN)?;
                if buf.len() != COOKIE_REPLY_LEN {
                    return Err(ParseError::Malformed("cookie reply length"));
                }
                Ok(Self::CookieReply {
                    receiver: u32_at(buf, 4),
                    nonce: buf[8..20]
                        .try_into()
                        .map_err(|_| ParseError::Malformed("cookie nonce"))?,
                    sealed: buf[20..52]
                        .try_into()
                        .map_err(|_| ParseError::Malformed("sealed cookie"))?,
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
            Self::CookieReply { .. } => "cookie_reply",
        }
    }
}

/// Writes a handshake initiation header into `out[..INIT_HEADER_LEN]`.
/// The Noise message goes at `out[INIT_HEADER_LEN..]`, then [`HANDSHAKE_MACS_LEN`] bytes of
/// MACs (`mesh_crypto::seal_macs` writes them once the rest is in place).
pub fn emit_init_header(
    out: &mut [u8; INIT_HEADER_LEN],
    pattern: Pattern,
    sender: u32,
    timestamp_ms: u64,
) {
    out[0] = TYPE_HANDSHAKE_INIT;
    out[1] = pattern as u8;
    out[2] = HANDSHAKE_VERSION;
    out[3] = 0;
    out[4..8].copy_from_slice(&sender.to_le_bytes());
    out[8..16].copy_from_slice(&timestamp_ms.to_le_bytes());
}

/// A cookie reply to the initiation of `receiver`.
pub fn emit_cookie_reply(
    out: &mut [u8; COOKIE_REPLY_LEN],
    receiver: u32,
    nonce: &[u8; 12],
    sealed: &[u8; 32],
) {
    out[0] = TYPE_COOKIE_REPLY;
    out[1] = 0;
    out[2] = HANDSHAKE_VERSION;
    out[3] = 0;
    out[4..8].copy_from_slice(&receiver.to_le_bytes());
    out[8..20].copy_from_slice(nonce);
    out[20..52].copy_from_slice(sealed);
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
    out[1] = 0;
    out[2] = HANDSHAKE_VERSION;
    out[3] = 0;
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

    const MACS: [u8; HANDSHAKE_MACS_LEN] = [0xab; HANDSHAKE_MACS_LEN];

    #[test]
    fn init_round_trip() {
        let mut buf = vec![0u8; INIT_HEADER_LEN + 5 + HANDSHAKE_MACS_LEN];
        let hdr: &mut [u8; INIT_HEADER_LEN] = (&mut buf[..INIT_HEADER_LEN]).try_into().unwrap();
        emit_init_header(hdr, Pattern::Xx, 0xdead_beef, 1_800_000_000_123);
        buf[INIT_HEADER_LEN..INIT_HEADER_LEN + 5].copy_from_slice(b"noise");
        buf[INIT_HEADER_LEN + 5..].copy_from_slice(&MACS);
        assert_eq!(
            Datagram::parse(&buf).unwrap(),
            Datagram::HandshakeInit {
                pattern: Pattern::Xx,
                sender: 0xdead_beef,
                timestamp: 1_800_000_000_123,
                noise: b"noise",
                macs: &MACS,
            }
        );
    }

    #[test]
    fn reply_round_trip() {
        for final_ in [false, true] {
            let mut buf = vec![0u8; REPLY_HEADER_LEN + 2 + HANDSHAKE_MACS_LEN];
            let hdr: &mut [u8; REPLY_HEADER_LEN] =
                (&mut buf[..REPLY_HEADER_LEN]).try_into().unwrap();
            emit_reply_header(hdr, final_, 7, 9);
            buf[REPLY_HEADER_LEN..REPLY_HEADER_LEN + 2].copy_from_slice(b"xy");
            buf[REPLY_HEADER_LEN + 2..].copy_from_slice(&MACS);
            let d = Datagram::parse(&buf).unwrap();
            let expect = if final_ {
                Datagram::HandshakeFinal {
                    sender: 7,
                    receiver: 9,
                    noise: b"xy",
                    macs: &MACS,
                }
            } else {
                Datagram::HandshakeResponse {
                    sender: 7,
                    receiver: 9,
                    noise: b"xy",
                    macs: &MACS,
                }
            };
            assert_eq!(d, expect);
        }
    }

    #[test]
    fn cookie_reply_round_trip_and_exact_length() {
        let mut buf = [0u8; COOKIE_REPLY_LEN];
        emit_cookie_reply(&mut buf, 77, &[1; 12], &[2; 32]);
        assert_eq!(
            Datagram::parse(&buf).unwrap(),
            Datagram::CookieReply {
                receiver: 77,
                nonce: &[1; 12],
                sealed: &[2; 32],
            }
        );
        let mut long = buf.to_vec();
        long.push(0);
        assert!(matches!(
            Datagram::parse(&long),
            Err(ParseError::Malformed(_))
        ));
        for len in 4..COOKIE_REPLY_LEN {
            assert!(matches!(
                Datagram::parse(&buf[..len]),
                Err(ParseError::Truncated { .. })
            ));
        }
    }

    /// A version-1 node's handshake messages (byte 2 zero, no MACs) are told apart from
    /// garbage, so the node can say which version it refused.
    #[test]
    fn version_1_handshakes_are_named() {
        let mut v1_init = [0u8; 104];
        v1_init[0] = TYPE_HANDSHAKE_INIT;
        v1_init[1] = 1;
        assert_eq!(Datagram::parse(&v1_init), Err(ParseError::Version(1)));
        let mut v1_reply = [0u8; 60];
        v1_reply[0] = TYPE_HANDSHAKE_RESPONSE;
        assert_eq!(Datagram::parse(&v1_reply), Err(ParseError::Version(1)));
        v1_reply[2] = 3;
        assert_eq!(Datagram::parse(&v1_reply), Err(ParseError::Version(3)));
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
        let mut init = [0u8; INIT_HEADER_LEN + HANDSHAKE_MACS_LEN];
        let hdr: &mut [u8; INIT_HEADER_LEN] = (&mut init[..INIT_HEADER_LEN]).try_into().unwrap();
        emit_init_header(hdr, Pattern::Ik, 3, 0);
        assert!(Datagram::parse(&init).is_ok());
        for len in 1..init.len() {
            assert!(Datagram::parse(&init[..len]).is_err(), "len {len}");
        }
        let mut reply = [0u8; REPLY_HEADER_LEN + HANDSHAKE_MACS_LEN];
        let hdr: &mut [u8; REPLY_HEADER_LEN] = (&mut reply[..REPLY_HEADER_LEN]).try_into().unwrap();
        emit_reply_header(hdr, true, 3, 4);
        assert!(Datagram::parse(&reply).is_ok());
        for len in 1..reply.len() {
            assert!(Datagram::parse(&reply[..len]).is_err(), "len {len}");
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
        let mut init = [0u8; INIT_HEADER_LEN + HANDSHAKE_MACS_LEN];
        let hdr: &mut [u8; INIT_HEADER_LEN] = (&mut init[..INIT_HEADER_LEN]).try_into().unwrap();
        emit_init_header(hdr, Pattern::Ik, 3, 0);
        init[1] = 7;
        assert!(matches!(
            Datagram::parse(&init),
            Err(ParseError::Malformed(_))
        ));
        init[1] = 1;
        init[3] = 1;
        assert!(matches!(
            Datagram::parse(&init),
            Err(ParseError::Malformed(_))
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep; the fuzz target covers the rest.
        let mut x: u32 = 0x1234_5678;
        for len in 0..96 {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    (x % 8) as u8
                })
                .collect();
            let _ = Datagram::parse(&buf);
        }
    }
}
