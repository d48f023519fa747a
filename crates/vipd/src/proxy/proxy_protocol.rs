//! The PROXY protocol v2 header (HAProxy's proxy-protocol.txt, section 2.2):
//! tells a backend who the client really was.

use std::net::SocketAddr;

/// The 12-byte signature every v2 header starts with.
pub const SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// The header for a TCP connection from `client` to `local` (the address
/// the client connected to). Mixed families (an IPv4 client on an IPv6
/// listener) are sent as IPv6 with the IPv4 address mapped.
pub fn header_v2(client: SocketAddr, local: SocketAddr) -> Vec<u8> {
    let mut header = Vec::with_capacity(16 + 36);
    header.extend_from_slice(&SIGNATURE);
    header.push(0x21); // version 2, command PROXY
    match (client, local) {
        (SocketAddr::V4(c), SocketAddr::V4(l)) => {
            header.push(0x11); // AF_INET, STREAM
            header.extend_from_slice(&12u16.to_be_bytes());
            header.extend_from_slice(&c.ip().octets());
            header.extend_from_slice(&l.ip().octets());
            header.extend_from_slice(&c.port().to_be_bytes());
            header.extend_from_slice(&l.port().to_be_bytes());
        }
        _ => {
            let v6 = |a: SocketAddr| match a {
                SocketAddr::V4(a) => a.ip().to_ipv6_mapped().octets(),
                SocketAddr::V6(a) => a.ip().octets(),
            };
            header.push(0x21); // AF_INET6, STREAM
            header.extend_from_slice(&36u16.to_be_bytes());
            header.extend_from_slice(&v6(client));
            header.extend_from_slice(&v6(local));
            header.extend_from_slice(&client.port().to_be_bytes());
            header.extend_from_slice(&local.port().to_be_bytes());
        }
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_bytes() {
        let h = header_v2(
            "198.18.0.21:40000".parse().unwrap(),
            "198.18.0.11:16443".parse().unwrap(),
        );
        assert_eq!(h.len(), 28);
        assert_eq!(&h[..12], &SIGNATURE);
        assert_eq!(&h[12..16], &[0x21, 0x11, 0x00, 0x0C]);
        assert_eq!(&h[16..20], &[198, 18, 0, 21]);
        assert_eq!(&h[20..24], &[198, 18, 0, 11]);
        assert_eq!(&h[24..28], &[0x9C, 0x40, 0x40, 0x3B]);
    }

    #[test]
    fn ipv6_and_mixed_families() {
        let h = header_v2(
            "[2001:db8::21]:1".parse().unwrap(),
            "[2001:db8::11]:2".parse().unwrap(),
        );
        assert_eq!(h.len(), 52);
        assert_eq!(&h[12..16], &[0x21, 0x21, 0x00, 0x24]);
        let mixed = header_v2("198.18.0.21:1".parse().unwrap(), "[::1]:2".parse().unwrap());
        assert_eq!(
            &mixed[16..32],
            &"::ffff:198.18.0.21"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
    }
}
