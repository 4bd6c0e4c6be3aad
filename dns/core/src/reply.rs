//! Building replies: the response header from the request's, the OPT record, and encoding
//! within the client's size limit (the TC bit when the answers do not fit).

use crate::config::CLASSIC_UDP_PAYLOAD;
use hickory_proto::op::{Edns, Message, Metadata, ResponseCode};

/// How a query arrived, which decides the reply size limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// A datagram: replies are truncated (TC bit) to the client's UDP payload size.
    Udp,
    /// A TCP stream: replies up to 65,535 bytes, never truncated.
    Tcp,
}

/// The reply size limit for `request` arriving over `transport`: 512 bytes over UDP without
/// EDNS, the client's advertised payload size (at least 512) capped at `max_udp` with
/// EDNS, and 65,535 over TCP.
pub(crate) fn size_limit(request: &Message, transport: Transport, max_udp: u16) -> u16 {
    match transport {
        Transport::Tcp => u16::MAX,
        Transport::Udp => match &request.edns {
            None => CLASSIC_UDP_PAYLOAD,
            Some(e) => e
                .max_payload()
                .clamp(CLASSIC_UDP_PAYLOAD, max_udp.max(CLASSIC_UDP_PAYLOAD)),
        },
    }
}

/// A response to `request` with its question echoed, RD and CD copied, and an OPT record
/// (advertising `max_udp`) when the request had one.
pub(crate) fn response_to(request: &Message, rcode: ResponseCode, max_udp: u16) -> Message {
    let mut resp = Message::new(
        request.metadata.id,
        hickory_proto::op::MessageType::Response,
        request.metadata.op_code,
    );
    resp.metadata = Metadata::response_from_request(&request.metadata);
    resp.metadata.recursion_available = true;
    resp.metadata.response_code = rcode;
    resp.queries = request.queries.clone();
    if request.edns.is_some() {
        resp.edns = Some(our_edns(max_udp));
    }
    resp
}

pub(crate) fn our_edns(max_udp: u16) -> Edns {
    let mut edns = Edns::new();
    edns.set_max_payload(max_udp);
    edns.set_version(0);
    edns
}

/// Encodes `msg` in at most `limit` bytes. When it does not fit, keeps the header, the
/// question, the OPT record and as many whole answers as fit, drops the authority and
/// additional sections, and sets TC, so that the client retries over TCP. `None` when
/// even that does not fit or hickory refuses to encode (a name too long, say).
pub(crate) fn encode_within(msg: &Message, limit: u16) -> Option<Vec<u8>> {
    let limit = usize::from(limit);
    if let Ok(bytes) = msg.to_vec()
        && bytes.len() <= limit
    {
        return Some(bytes);
    }
    let mut cut = msg.clone();
    cut.metadata.truncation = true;
    cut.authorities.clear();
    cut.additionals.clear();
    cut.signature = None;
    let all = std::mem::take(&mut cut.answers);
    let fits = |n: usize, cut: &mut Message| -> Option<Vec<u8>> {
        cut.answers = all[..n].to_vec();
        cut.to_vec().ok().filter(|b| b.len() <= limit)
    };
    // Binary search for the largest answer count that fits; zero must fit or we give up.
    let mut best = fits(0, &mut cut)?;
    let (mut lo, mut hi) = (0usize, all.len());
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        match fits(mid, &mut cut) {
            Some(b) => {
                best = b;
                lo = mid;
            }
            None => hi = mid - 1,
        }
    }
    Some(best)
}

/// The response code of a reply (extended RCODE included), `None` when it does not parse:
/// what metrics count replies by.
pub fn response_code(reply: &[u8]) -> Option<u16> {
    let header = reply.get(..12)?;
    let rcode = u16::from(header[3] & 0x0f);
    let additional = u16::from_be_bytes([header[10], header[11]]);
    if additional == 0 {
        // No OPT record: the header's four bits are the whole code.
        return Some(rcode);
    }
    // An OPT record may carry the code's upper bits (BADVERS): read the whole message.
    Message::from_vec(reply)
        .ok()
        .map(|m| u16::from(m.metadata.response_code))
}

#[cfg(test)]
mod rcode_tests {
    use super::*;
    use hickory_proto::op::{MessageType, OpCode};

    #[test]
    fn response_code_reads_the_reply() {
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        m.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(response_code(&m.to_vec().unwrap()), Some(3));
        m.metadata.response_code = ResponseCode::ServFail;
        assert_eq!(response_code(&m.to_vec().unwrap()), Some(2));
        assert_eq!(response_code(&[1, 2, 3]), None);
        // With EDNS, the upper bits come from the OPT record.
        m.edns = Some(Edns::new());
        m.metadata.response_code = ResponseCode::BADVERS;
        assert_eq!(response_code(&m.to_vec().unwrap()), Some(16));
        m.metadata.response_code = ResponseCode::NXDomain;
        assert_eq!(response_code(&m.to_vec().unwrap()), Some(3));
    }
}
