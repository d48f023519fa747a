//! The Internet checksum (RFC 1071), shared by VRRP and ICMPv6.

use std::net::IpAddr;

/// A running one's complement sum over 16-bit big-endian words.
///
/// Pieces are fed in order; an odd-length piece must only ever be the last
/// one (every pseudo-header and fixed header used here is of even length).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Checksum {
    sum: u32,
}

impl Checksum {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn add_bytes(&mut self, bytes: &[u8]) -> &mut Self {
        let mut words = bytes.chunks_exact(2);
        for word in &mut words {
            self.add_u16(u16::from_be_bytes([word[0], word[1]]));
        }
        // RFC 1071 §4.1: an odd trailing byte is padded with a zero byte.
        if let [last] = words.remainder() {
            self.add_u16(u16::from_be_bytes([*last, 0]));
        }
        self
    }

    pub(crate) fn add_u16(&mut self, word: u16) -> &mut Self {
        self.sum += u32::from(word);
        // Fold eagerly so the u32 can never overflow, whatever the input size.
        self.sum = (self.sum & 0xffff) + (self.sum >> 16);
        self
    }

    /// Adds the pseudo-header used by TCP/UDP-style checksums: source,
    /// destination, upper-layer length and protocol. The IPv4 layout is
    /// RFC 768/793's 12 bytes, the IPv6 one is RFC 8200 §8.1's 40 bytes; both
    /// have the same one's complement sum when the length fits in 16 bits.
    pub(crate) fn add_pseudo_header(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        protocol: u8,
        upper_layer_len: u16,
    ) -> &mut Self {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                self.add_bytes(&s.octets()).add_bytes(&d.octets());
            }
            (s, d) => {
                self.add_bytes(&ip_bytes16(s)).add_bytes(&ip_bytes16(d));
            }
        }
        self.add_u16(u16::from(protocol)).add_u16(upper_layer_len)
    }

    /// The value to put in the checksum field.
    pub(crate) fn finish(&self) -> u16 {
        let folded = (self.sum & 0xffff) + (self.sum >> 16);
        !(folded as u16)
    }
}

fn ip_bytes16(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to 0xddf2.
        let sum = Checksum::new()
            .add_bytes(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7])
            .finish();
        assert_eq!(sum, !0xddf2);
    }

    #[test]
    fn odd_length_is_zero_padded() {
        let odd = Checksum::new().add_bytes(&[0x12, 0x34, 0x56]).finish();
        let even = Checksum::new()
            .add_bytes(&[0x12, 0x34, 0x56, 0x00])
            .finish();
        assert_eq!(odd, even);
    }
}
