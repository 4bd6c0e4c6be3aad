//! Packet captures on a host's underlay link: `tcpdump -w` into a file, parsed with
//! `pcap-file` into Ethernet → IPv4 → UDP.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;

use crate::process::Proc;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of ARP.
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// IP protocol number of UDP.
pub const IPPROTO_UDP: u8 = 17;

/// A running `tcpdump`; [`Capture::stop`] ends it and returns what it saw.
#[derive(Debug)]
pub struct Capture {
    proc: Proc,
    file: PathBuf,
    stderr_file: PathBuf,
}

/// One captured UDP datagram over IPv4 (first fragment only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram {
    /// Source address and port.
    pub src: SocketAddrV4,
    /// Destination address and port.
    pub dst: SocketAddrV4,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

/// What a captured Ethernet frame carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// An unfragmented (or first-fragment) UDP datagram.
    Udp(UdpDatagram),
    /// Any other IPv4 packet, including non-first fragments.
    Ipv4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
        /// IP protocol number.
        protocol: u8,
        /// Whether it is a fragment (offset > 0 or more-fragments set).
        fragment: bool,
    },
    /// An ARP frame.
    Arp,
    /// Any other EtherType, or a frame too short to parse.
    Other {
        /// The EtherType (0 if the frame was too short).
        ethertype: u16,
    },
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedPacket {
    /// Capture time since the Unix epoch.
    pub timestamp: Duration,
    /// The whole Ethernet frame as captured.
    pub raw: Vec<u8>,
    /// What it carried.
    pub frame: Frame,
}

impl CapturedPacket {
    /// The UDP datagram, if this frame is one.
    pub fn udp(&self) -> Option<&UdpDatagram> {
        match &self.frame {
            Frame::Udp(d) => Some(d),
            _ => None,
        }
    }

    /// Whether the raw frame contains `pattern` anywhere (headers included).
    pub fn contains(&self, pattern: &[u8]) -> bool {
        contains(&self.raw, pattern)
    }
}

/// Whether `haystack` contains `needle` (an empty needle is always contained).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

impl Capture {
    /// Starts `tcpdump` on `interface` inside `netns`, writing to `file`, and returns once it
    /// says it is listening.
    pub(crate) fn start(netns: &str, interface: &str, file: &Path) -> Result<Self, String> {
        let stderr_file = file.with_extension("tcpdump.log");
        let stderr = File::create(&stderr_file)
            .map_err(|e| format!("cannot create {}: {e}", stderr_file.display()))?;
        let file_arg = file.to_string_lossy().into_owned();
        // -Z root: Debian's tcpdump otherwise drops to user tcpdump before opening the file.
        // --immediate-mode: otherwise frames wait in the ring for a block timeout and are
        // lost when tcpdump is stopped.
        let argv = [
            "ip",
            "netns",
            "exec",
            netns,
            "tcpdump",
            "-i",
            interface,
            "-w",
            &file_arg,
            "-U",
            "-s",
            "0",
            "-n",
            "-Z",
            "root",
            "--immediate-mode",
        ];
        let mut proc = Proc::spawn(
            format!("tcpdump on {interface} in {netns}"),
            Command::new(argv[0])
                .args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr),
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = std::fs::read_to_string(&stderr_file).unwrap_or_default();
            if log.contains("listening on") {
                break;
            }
            if let Some(status) = proc.try_wait()? {
                return Err(format!("tcpdump exited ({status}) before listening: {log}"));
            }
            if Instant::now() >= deadline {
                return Err(format!("tcpdump not listening after 10 s: {log}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            proc,
            file: file.to_owned(),
            stderr_file,
        })
    }

    /// The pcap file being written.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// Stops `tcpdump` (SIGTERM, so it flushes) and parses everything it wrote.
    pub fn stop(mut self) -> Result<Vec<CapturedPacket>, String> {
        // Give frames still in flight through the kernel a moment to reach the capture.
        std::thread::sleep(Duration::from_millis(200));
        self.proc.terminate(Duration::from_secs(5));
        let packets = read_pcap(&self.file);
        if packets.is_err() {
            let log = std::fs::read_to_string(&self.stderr_file).unwrap_or_default();
            return packets.map_err(|e| format!("{e}; tcpdump said: {log}"));
        }
        packets
    }
}

/// Reads an Ethernet pcap file.
pub fn read_pcap(path: &Path) -> Result<Vec<CapturedPacket>, String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut reader =
        PcapReader::new(file).map_err(|e| format!("{} is not a pcap file: {e}", path.display()))?;
    let datalink = reader.header().datalink;
    if datalink != DataLink::ETHERNET {
        return Err(format!(
            "{}: link type {datalink:?}, expected Ethernet",
            path.display()
        ));
    }
    let mut packets = Vec::new();
    while let Some(packet) = reader.next_packet() {
        match packet {
            Ok(p) => packets.push(CapturedPacket {
                timestamp: p.timestamp,
                frame: parse_ethernet(&p.data),
                raw: p.data.into_owned(),
            }),
            // tcpdump killed mid-write leaves a truncated last record.
            Err(_) => break,
        }
    }
    Ok(packets)
}

/// Parses an Ethernet frame (no VLAN tags: the harness's links have none).
pub fn parse_ethernet(frame: &[u8]) -> Frame {
    let Some(ethertype) = frame.get(12..14).map(|b| u16::from_be_bytes([b[0], b[1]])) else {
        return Frame::Other { ethertype: 0 };
    };
    match ethertype {
        ETHERTYPE_ARP => Frame::Arp,
        ETHERTYPE_IPV4 => parse_ipv4(&frame[14..]).unwrap_or(Frame::Other { ethertype }),
        _ => Frame::Other { ethertype },
    }
}

fn parse_ipv4(packet: &[u8]) -> Option<Frame> {
    let first = *packet.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(first & 0x0f) * 4;
    let total_len = usize::from(u16::from_be_bytes([*packet.get(2)?, *packet.get(3)?]));
    if header_len < 20 || total_len < header_len || packet.len() < total_len {
        return None;
    }
    let flags_offset = u16::from_be_bytes([packet[6], packet[7]]);
    let more_fragments = flags_offset & 0x2000 != 0;
    let offset = flags_offset & 0x1fff;
    let protocol = packet[9];
    let src = Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]);
    let dst = Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]);
    let body = &packet[header_len..total_len];
    if protocol == IPPROTO_UDP && offset == 0 && !more_fragments && body.len() >= 8 {
        let src_port = u16::from_be_bytes([body[0], body[1]]);
        let dst_port = u16::from_be_bytes([body[2], body[3]]);
        let udp_len = usize::from(u16::from_be_bytes([body[4], body[5]]));
        if (8..=body.len()).contains(&udp_len) {
            return Some(Frame::Udp(UdpDatagram {
                src: SocketAddrV4::new(src, src_port),
                dst: SocketAddrV4::new(dst, dst_port),
                payload: body[8..udp_len].to_vec(),
            }));
        }
    }
    Some(Frame::Ipv4 {
        src,
        dst,
        protocol,
        fragment: more_fragments || offset != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

    fn eth(ethertype: u16, body: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    fn ipv4(protocol: u8, flags_offset: u16, body: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + body.len()).expect("small packet");
        let mut p = vec![0x45, 0];
        p.extend_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(&flags_offset.to_be_bytes());
        p.extend_from_slice(&[64, protocol, 0, 0, 198, 18, 1, 1, 198, 18, 1, 2]);
        p.extend_from_slice(body);
        p
    }

    fn udp(payload: &[u8]) -> Vec<u8> {
        let len = u16::try_from(8 + payload.len()).expect("small datagram");
        let mut d = Vec::new();
        d.extend_from_slice(&40000u16.to_be_bytes());
        d.extend_from_slice(&6788u16.to_be_bytes());
        d.extend_from_slice(&len.to_be_bytes());
        d.extend_from_slice(&[0, 0]);
        d.extend_from_slice(payload);
        d
    }

    #[test]
    fn udp_over_ipv4_is_parsed() {
        let frame = eth(
            ETHERTYPE_IPV4,
            &ipv4(IPPROTO_UDP, 0x4000, &udp(b"\x04hello")),
        );
        assert_eq!(
            parse_ethernet(&frame),
            Frame::Udp(UdpDatagram {
                src: "198.18.1.1:40000".parse().expect("addr"),
                dst: "198.18.1.2:6788".parse().expect("addr"),
                payload: b"\x04hello".to_vec(),
            })
        );
    }

    #[test]
    fn non_udp_fragments_arp_and_short_frames_are_flagged() {
        let icmp = eth(ETHERTYPE_IPV4, &ipv4(1, 0, &[8, 0, 0, 0, 0, 0, 0, 0]));
        assert!(matches!(
            parse_ethernet(&icmp),
            Frame::Ipv4 {
                protocol: 1,
                fragment: false,
                ..
            }
        ));
        let frag = eth(ETHERTYPE_IPV4, &ipv4(IPPROTO_UDP, 0x2000, &udp(b"x")));
        assert!(matches!(
            parse_ethernet(&frag),
            Frame::Ipv4 {
                protocol: IPPROTO_UDP,
                fragment: true,
                ..
            }
        ));
        assert_eq!(parse_ethernet(&eth(ETHERTYPE_ARP, &[0; 28])), Frame::Arp);
        assert_eq!(
            parse_ethernet(&eth(ETHERTYPE_IPV6, &[0x60; 40])),
            Frame::Other {
                ethertype: ETHERTYPE_IPV6
            }
        );
        assert_eq!(parse_ethernet(&[1, 2, 3]), Frame::Other { ethertype: 0 });
        let truncated = eth(ETHERTYPE_IPV4, &ipv4(IPPROTO_UDP, 0, &udp(b"abc"))[..25]);
        assert_eq!(
            parse_ethernet(&truncated),
            Frame::Other {
                ethertype: ETHERTYPE_IPV4
            }
        );
    }

    #[test]
    fn pcap_files_round_trip() {
        let dir = std::env::temp_dir().join(format!("mesh-capture-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("t.pcap");
        let frames = [
            eth(
                ETHERTYPE_IPV4,
                &ipv4(IPPROTO_UDP, 0, &udp(b"\x04secret-pattern")),
            ),
            eth(ETHERTYPE_ARP, &[0; 28]),
        ];
        {
            let file = File::create(&path).expect("create pcap");
            let mut w = PcapWriter::with_header(file, PcapHeader::default()).expect("writer");
            for f in &frames {
                let len = u32::try_from(f.len()).expect("small");
                w.write_packet(&PcapPacket::new(Duration::from_secs(1), len, f))
                    .expect("write");
            }
        }
        let packets = read_pcap(&path).expect("read back");
        std::fs::remove_dir_all(&dir).expect("remove tmp dir");
        assert_eq!(packets.len(), 2);
        assert!(packets[0].contains(b"secret-pattern"));
        assert_eq!(
            packets[0].udp().map(|d| d.payload.clone()),
            Some(b"\x04secret-pattern".to_vec())
        );
        assert!(!packets[1].contains(b"secret-pattern"));
        assert_eq!(packets[1].frame, Frame::Arp);
    }
}
