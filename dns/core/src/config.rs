//! What the answering side is configured with, and its defaults (`docs/defaults.md` must
//! say the same).

use hickory_proto::rr::Name;
use ipnet::IpNet;
use std::str::FromStr;

/// The cluster zone when none is configured.
pub const DEFAULT_ZONE: &str = "mesh.local.";

/// TTL of A, AAAA and PTR answers, in seconds. 30 s: short enough that a pod that moved or
/// a node that died drops out of caching resolvers within half a minute (weaveDNS used 1 s
/// in effect, which defeats caching), long enough that a busy client does not ask for every
/// connection.
pub const DEFAULT_TTL: u32 = 30;

/// TTL of negative answers (NXDOMAIN, NODATA) in seconds: the SOA's own TTL and its MINIMUM
/// field (RFC 2308 takes the smaller). Short, because a pod often looks a name up just
/// before the pod behind it is registered.
pub const DEFAULT_NEGATIVE_TTL: u32 = 5;

/// The largest UDP reply we send, whatever a client advertises in EDNS: 1232 bytes, the
/// DNS Flag Day 2020 value that avoids IP fragmentation on any common path.
pub const DEFAULT_MAX_UDP_PAYLOAD: u16 = 1232;

/// UDP reply size for a client that sent no EDNS OPT record (RFC 1035).
pub const CLASSIC_UDP_PAYLOAD: u16 = 512;

/// Queries longer than this are dropped unanswered: a real query is a header, one question
/// and perhaps an OPT record with a few options, far below this.
pub const MAX_QUERY_LEN: usize = 4096;

/// Why a name cannot be registered in the zone (the local API's caller passed it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Not a valid DNS name.
    #[error("{name:?} is not a valid DNS name: {reason}")]
    Invalid {
        /// What was given.
        name: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A fully qualified name outside the cluster zone.
    #[error("{name} is outside the zone {zone}")]
    OutsideZone {
        /// What was given.
        name: String,
        /// The zone.
        zone: String,
    },
}

/// Configuration of the answering side. [`Default`] gives the documented defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneConfig {
    /// The cluster zone, fully qualified: names in it are answered from the store, never
    /// forwarded. Default [`DEFAULT_ZONE`].
    pub zone: Name,
    /// TTL of positive answers. Default [`DEFAULT_TTL`].
    pub ttl: u32,
    /// TTL of negative answers. Default [`DEFAULT_NEGATIVE_TTL`].
    pub negative_ttl: u32,
    /// Address ranges whose reverse names we are authoritative for (typically the cluster
    /// range): a PTR query for an address inside one without a record gets NXDOMAIN rather
    /// than being forwarded. PTR queries for addresses that have a record are answered
    /// wherever the address lies. Default: none.
    pub reverse_zones: Vec<IpNet>,
    /// Load balancing: at most this many addresses per answer, the querying node's own
    /// first ([`crate::QueryCtx::near`]). Default `None`: every address, shuffled.
    pub subset: Option<usize>,
    /// Cap on the UDP reply size. Default [`DEFAULT_MAX_UDP_PAYLOAD`].
    pub max_udp_payload: u16,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        Self {
            zone: Name::from_ascii(DEFAULT_ZONE).unwrap_or_else(|_| Name::root()),
            ttl: DEFAULT_TTL,
            negative_ttl: DEFAULT_NEGATIVE_TTL,
            reverse_zones: Vec::new(),
            subset: None,
            max_udp_payload: DEFAULT_MAX_UDP_PAYLOAD,
        }
    }
}

impl ZoneConfig {
    /// The same configuration with another zone (`"cluster.internal"`; a final dot is
    /// optional).
    pub fn with_zone(mut self, zone: &str) -> Result<Self, NameError> {
        let mut name = parse_name(zone)?;
        name.set_fqdn(true);
        self.zone = name.to_lowercase();
        Ok(self)
    }

    /// Turns what a user typed (`web`, `web.mesh.local`, `web.mesh.local.`) into the fully
    /// qualified, lower-case name the store keys on. A relative name that does not already
    /// end in the zone gets the zone appended; a fully qualified one must be inside it.
    pub fn qualify(&self, name: &str) -> Result<Name, NameError> {
        let parsed = parse_name(name)?;
        let fq = if parsed.is_fqdn() {
            parsed
        } else {
            let mut as_fqdn = parsed.clone();
            as_fqdn.set_fqdn(true);
            if self.zone.zone_of(&as_fqdn) {
                as_fqdn
            } else {
                parsed
                    .append_domain(&self.zone)
                    .map_err(|e| NameError::Invalid {
                        name: name.to_owned(),
                        reason: e.to_string(),
                    })?
            }
        };
        if !self.zone.zone_of(&fq) {
            return Err(NameError::OutsideZone {
                name: name.to_owned(),
                zone: self.zone.to_string(),
            });
        }
        Ok(fq.to_lowercase())
    }
}

fn parse_name(s: &str) -> Result<Name, NameError> {
    let invalid = |reason: String| NameError::Invalid {
        name: s.to_owned(),
        reason,
    };
    if s.is_empty() || s == "." {
        return Err(invalid("empty".to_owned()));
    }
    Name::from_str(s).map_err(|e| invalid(e.to_string()))
}
