//! The edge's one UDP port: which session a datagram belongs to, and which
//! remote addresses may talk to the edge at all.

use std::net::IpAddr;
use std::str::FromStr;

/// An IP network such as `127.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

/// Why a network did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a network (like 127.0.0.0/8 or ::1/128)")]
pub struct NetworkParseError(String);

impl FromStr for Network {
    type Err = NetworkParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = || NetworkParseError(text.to_owned());
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| fail())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| fail())?,
            None => max,
        };
        if prefix > max {
            return Err(fail());
        }
        Ok(Self { addr, prefix })
    }
}

impl Network {
    /// The loopback networks of both families.
    pub fn loopback() -> Vec<Network> {
        vec![
            Network {
                addr: IpAddr::from([127, 0, 0, 0]),
                prefix: 8,
            },
            Network {
                addr: IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
                prefix: 128,
            },
        ]
    }

    /// Whether `ip` lies in this network. IPv4 addresses mapped into IPv6
    /// are compared as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(&net.octets(), &ip.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    if a[..full] != b[..full] {
        return false;
    }
    let rest = prefix % 8;
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    a[full] & mask == b[full] & mask
}

/// Whether `ip` may talk to the edge: any address when no network is
/// configured, else only those inside one.
pub(crate) fn allowed(networks: &[Network], ip: IpAddr) -> bool {
    networks.is_empty() || networks.iter().any(|n| n.contains(ip))
}

const STUN_MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const STUN_BINDING_REQUEST: [u8; 2] = [0x00, 0x01];
const STUN_USERNAME: u16 = 0x0006;

/// The edge's ICE username fragment named by a STUN binding request
/// (`USERNAME` is `edge-ufrag:client-ufrag`), or `None` for anything else.
pub(crate) fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    if datagram.len() < 20 || datagram[0..2] != STUN_BINDING_REQUEST {
        return None;
    }
    if datagram[4..8] != STUN_MAGIC {
        return None;
    }
    let length = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let body = datagram.get(20..20 + length)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let kind = u16::from_be_bytes([body[at], body[at + 1]]);
        let len = usize::from(u16::from_be_bytes([body[at + 2], body[at + 3]]));
        let value = body.get(at + 4..at + 4 + len)?;
        if kind == STUN_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_match() {
        let net: Network = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let odd: Network = "192.168.4.0/22".parse().unwrap();
        assert!(odd.contains("192.168.7.255".parse().unwrap()));
        assert!(!odd.contains("192.168.8.0".parse().unwrap()));
        let host: Network = "::1".parse().unwrap();
        assert!(host.contains("::1".parse().unwrap()));
        assert!(!host.contains("127.0.0.1".parse().unwrap()));
        for bad in ["", "10.0.0.0/33", "::/129", "example.com/8", "1.2.3.4/x"] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
        assert!(allowed(&[], "8.8.8.8".parse().unwrap()));
        assert!(!allowed(
            &Network::loopback(),
            "192.168.1.1".parse().unwrap()
        ));
        assert!(allowed(&Network::loopback(), "127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn stun_username_names_the_session() {
        let mut request = vec![0x00, 0x01, 0, 0, 0x21, 0x12, 0xa4, 0x42];
        request.extend_from_slice(&[7; 12]);
        // A PRIORITY attribute first, then USERNAME with padding.
        let mut attrs = vec![0x00, 0x24, 0, 4, 1, 2, 3, 4];
        attrs.extend_from_slice(&[0x00, 0x06, 0, 9]);
        attrs.extend_from_slice(b"edge:peer");
        attrs.extend_from_slice(&[0, 0, 0]);
        request[2..4].copy_from_slice(&(attrs.len() as u16).to_be_bytes());
        request.extend_from_slice(&attrs);
        assert_eq!(stun_local_ufrag(&request), Some("edge"));

        let mut response = request.clone();
        response[0..2].copy_from_slice(&[0x01, 0x01]);
        assert_eq!(stun_local_ufrag(&response), None);
        assert_eq!(stun_local_ufrag(&request[..30]), None, "truncated");
        assert_eq!(stun_local_ufrag(&[0x16, 0xfe, 0xfd]), None, "DTLS");
    }
}
