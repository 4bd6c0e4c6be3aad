//! Reading upstream resolvers out of resolv.conf text (the caller reads the file).

use std::net::{IpAddr, SocketAddr};

/// The `nameserver` addresses in `text` (resolv.conf(5) syntax), in file order, port 53.
/// Comments (`#`, `;`), other keywords and unparseable addresses are skipped; an IPv6
/// link-local address with a zone (`fe80::1%eth0`) is skipped too, since the zone names an
/// interface this crate cannot resolve. Duplicates are kept once.
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next() else {
            continue;
        };
        let Ok(ip) = addr.parse::<IpAddr>() else {
            continue;
        };
        let sa = SocketAddr::new(ip, 53);
        if !out.contains(&sa) {
            out.push(sa);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameservers_in_order() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2 # main\n\
                    nameserver\tfd00::53\n;nameserver 9.9.9.9\nnameserver fe80::1%eth0\n\
                    nameserver bogus\noptions timeout:1\nnameserver 10.0.0.2\n";
        let got = parse_resolv_conf(text);
        assert_eq!(
            got,
            vec![
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "[fd00::53]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn empty_text_gives_nothing() {
        assert!(parse_resolv_conf("").is_empty());
        assert!(parse_resolv_conf("domain x\n").is_empty());
    }
}
