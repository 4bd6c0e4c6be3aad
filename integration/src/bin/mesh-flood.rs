//! `mesh-flood`: the attacker of the handshake-flood tests and benchmark. Sends UDP datagrams
//! to a meshd from spoofed source addresses, through a raw socket (root, in a test
//! namespace only), paced to a rate or as fast as it can, and prints what it sent as one
//! JSON line.
//!
//! ```text
//! mesh-flood --target IP:PORT [--rate N|max] [--seconds S | --count N]
//!            [--spoof CIDR | --source IP:PORT]
//!            [--shape v2|v1 | --replay FILE | --member SECRET_FILE --to-key KEY]
//! ```
//!
//! - `--shape v2` (default): junk handshake initiations of protocol version 2 (a valid
//!   header: type 1, IK, version 2; then 130 random bytes where the Noise message and the
//!   MACs go, 146 bytes in all, the size of a real IK initiation). They get past the parser to
//!   the MAC check.
//! - `--shape v1`: junk initiations as version 1 had them (type 1, IK, 104 bytes).
//! - `--replay FILE`: the bytes of FILE (a captured datagram), again and again.
//! - `--member SECRET_FILE --to-key KEY`: a hostile member: version-2 IK initiations to the
//!   node whose public key is KEY, each with a fresh timestamp and random Noise bytes, their
//!   mac1 sealed with the cluster secret, so they pass the MAC, timestamp and replay checks
//!   and reach the handshake budget (and fail the Noise read).
//! - `--spoof CIDR` (default 198.19.0.0/16): each datagram from a random address and port
//!   of the range; `--source IP:PORT`: all from one address.
//!
//! Randomness is a xorshift seeded from the clock: the junk only has to differ, not be
//! unpredictable. The IPv4 and UDP headers are written here (with `IP_HDRINCL`, the kernel
//! takes them as they are); the UDP checksum is left zero, which IPv4 allows.

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: mesh-flood --target IP:PORT [--rate N|max] [--seconds S | --count N] \
                     [--spoof CIDR | --source IP:PORT] \
                     [--shape v2|v1 | --replay FILE | --member SECRET_FILE --to-key KEY]";

enum Payload {
    V2,
    V1,
    Replay(Vec<u8>),
    Member(mesh_crypto::Mac1Key),
}

enum Source {
    Spoof { base: u32, mask: u32 },
    Fixed(SocketAddrV4),
}

struct Args {
    target: SocketAddrV4,
    rate: Option<u64>,
    seconds: Option<f64>,
    count: Option<u64>,
    source: Source,
    payload: Payload,
}

fn parse() -> Result<Args, String> {
    let mut target = None;
    let mut rate = Some(20_000);
    let mut seconds = None;
    let mut count = None;
    let mut source = Source::Spoof {
        base: u32::from(Ipv4Addr::new(198, 19, 0, 0)),
        mask: 0xffff_0000,
    };
    let mut payload = Payload::V2;
    let mut member_secret: Option<String> = None;
    let mut to_key: Option<mesh_crypto::PublicKey> = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--target" => {
                target = Some(
                    value()?
                        .parse::<SocketAddrV4>()
                        .map_err(|e| format!("--target: {e}"))?,
                )
            }
            "--rate" => {
                let v = value()?;
                rate = if v == "max" {
                    None
                } else {
                    Some(v.parse().map_err(|e| format!("--rate {v}: {e}"))?)
                };
            }
            "--seconds" => {
                let v = value()?;
                seconds = Some(v.parse().map_err(|e| format!("--seconds {v}: {e}"))?);
            }
            "--count" => {
                let v = value()?;
                count = Some(v.parse().map_err(|e| format!("--count {v}: {e}"))?);
            }
            "--spoof" => {
                let v = value()?;
                let (ip, len) = v
                    .split_once('/')
                    .ok_or(format!("--spoof {v}: not a CIDR"))?;
                let ip: Ipv4Addr = ip.parse().map_err(|e| format!("--spoof {v}: {e}"))?;
                let len: u32 = len.parse().map_err(|e| format!("--spoof {v}: {e}"))?;
                if len > 32 {
                    return Err(format!("--spoof {v}: prefix longer than 32"));
                }
                let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
                source = Source::Spoof {
                    base: u32::from(ip) & mask,
                    mask,
                };
            }
            "--source" => {
                let v = value()?;
                source = Source::Fixed(v.parse().map_err(|e| format!("--source {v}: {e}"))?);
            }
            "--shape" => {
                payload = match value()?.as_str() {
                    "v2" => Payload::V2,
                    "v1" => Payload::V1,
                    other => return Err(format!("--shape {other}: v2 or v1")),
                }
            }
            "--replay" => {
                let v = value()?;
                let bytes = std::fs::read(&v).map_err(|e| format!("--replay {v}: {e}"))?;
                payload = Payload::Replay(bytes);
            }
            "--member" => member_secret = Some(value()?),
            "--to-key" => {
                let v = value()?;
                to_key = Some(v.parse().map_err(|e| format!("--to-key {v}: {e}"))?);
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    let target = target.ok_or(format!("--target is required\n{USAGE}"))?;
    match (member_secret, to_key) {
        (Some(file), Some(key)) => {
            let secret = std::fs::read(&file).map_err(|e| format!("--member {file}: {e}"))?;
            let psk = mesh_crypto::ClusterPsk::derive(secret.trim_ascii());
            payload = Payload::Member(mesh_crypto::Mac1Key::for_receiver(&psk, &key));
        }
        (None, None) => {}
        _ => return Err(format!("--member and --to-key go together\n{USAGE}")),
    }
    if seconds.is_none() && count.is_none() {
        return Err(format!("give --seconds or --count\n{USAGE}"));
    }
    Ok(Args {
        target,
        rate,
        seconds,
        count,
        source,
        payload,
    })
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }
}

/// The internet checksum of an IPv4 header.
fn ip_checksum(h: &[u8]) -> u16 {
    let mut sum: u32 = h
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Writes one IPv4 + UDP datagram from `src` to `dst` carrying `payload` into `out`.
fn packet(out: &mut Vec<u8>, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) {
    out.clear();
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = [0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.ip().octets());
    ip[16..20].copy_from_slice(&dst.ip().octets());
    let sum = ip_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(&ip);
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
}

fn run(args: Args) -> Result<(), String> {
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(255)))
        .map_err(|e| format!("raw socket (needs root): {e}"))?;
    socket
        .set_header_included_v4(true)
        .map_err(|e| format!("IP_HDRINCL: {e}"))?;
    let dst = SockAddr::from(SocketAddr::V4(args.target));
    let seed = Instant::now().elapsed().as_nanos() as u64
        ^ std::process::id() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = XorShift(seed | 1);
    let mut payload = match &args.payload {
        Payload::V2 => vec![0u8; 146],
        Payload::V1 => vec![0u8; 104],
        Payload::Replay(b) => b.clone(),
        Payload::Member(_) => vec![0u8; 146],
    };
    let mut buf = Vec::with_capacity(payload.len() + 28);
    let start = Instant::now();
    let deadline = args.seconds.map(|s| start + Duration::from_secs_f64(s));
    let mut sent: u64 = 0;
    let mut errors: u64 = 0;
    loop {
        if args.count.is_some_and(|c| sent + errors >= c)
            || deadline.is_some_and(|d| Instant::now() >= d)
        {
            break;
        }
        if let Some(rate) = args.rate {
            // Paced: datagram k leaves at start + k / rate.
            let due = start + Duration::from_secs_f64((sent + errors) as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        match &args.payload {
            Payload::V2 => {
                rng.fill(&mut payload);
                payload[..4].copy_from_slice(&[1, 1, 2, 0]);
            }
            Payload::V1 => {
                rng.fill(&mut payload);
                payload[..4].copy_from_slice(&[1, 1, 0, 0]);
            }
            Payload::Replay(_) => {}
            Payload::Member(key) => {
                rng.fill(&mut payload);
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let sender = rng.next() as u32;
                let header: &mut [u8; mesh_proto::datagram::INIT_HEADER_LEN] = (&mut payload
                    [..mesh_proto::datagram::INIT_HEADER_LEN])
                    .try_into()
                    .map_err(|_| "init header")?;
                mesh_proto::datagram::emit_init_header(
                    header,
                    mesh_proto::datagram::Pattern::Ik,
                    sender,
                    now_ms,
                );
                mesh_crypto::seal_macs(&mut payload, key, None);
            }
        }
        let src = match args.source {
            Source::Fixed(a) => a,
            Source::Spoof { base, mask } => {
                let r = rng.next();
                let host = (r as u32) & !mask;
                let port = ((r >> 32) as u16).max(1024);
                SocketAddrV4::new(Ipv4Addr::from(base | host), port)
            }
        };
        packet(&mut buf, src, args.target, &payload);
        match socket.send_to(&buf, &dst) {
            Ok(_) => sent += 1,
            Err(_) => errors += 1,
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"sent\":{sent},\"errors\":{errors},\"seconds\":{secs:.3},\"rate\":{:.0}}}",
        sent as f64 / secs.max(1e-9)
    );
    Ok(())
}

fn main() -> ExitCode {
    match parse().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mesh-flood: {e}");
            ExitCode::from(2)
        }
    }
}
