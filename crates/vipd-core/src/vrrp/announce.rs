//! Frames that announce a virtual address on the link after a takeover:
//! gratuitous ARP for IPv4 and unsolicited Neighbor Advertisements for IPv6,
//! and the VRRP virtual MAC addresses.
//!
//! RFC 5798 §6.4.1/§6.4.2: a router becoming Master broadcasts a gratuitous
//! ARP request (IPv4) or sends an unsolicited ND Neighbor Advertisement
//! (IPv6) for each virtual address, so hosts and switches move their ARP
//! caches / forwarding tables to it at once instead of when entries expire.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum::Checksum;

/// An IEEE 802 MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    pub const fn octets(self) -> [u8; 6] {
        self.0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// RFC 5798 §7.3: the IPv4 virtual router MAC address, 00-00-5E-00-01-{VRID}.
pub const fn virtual_mac_v4(vrid: u8) -> MacAddr {
    MacAddr([0x00, 0x00, 0x5e, 0x00, 0x01, vrid])
}

/// RFC 5798 §7.3: the IPv6 virtual router MAC address, 00-00-5E-00-02-{VRID}.
pub const fn virtual_mac_v6(vrid: u8) -> MacAddr {
    MacAddr([0x00, 0x00, 0x5e, 0x00, 0x02, vrid])
}

/// The virtual MAC for a VRID in the family of `address`.
pub const fn virtual_mac(vrid: u8, address: IpAddr) -> MacAddr {
    match address {
        IpAddr::V4(_) => virtual_mac_v4(vrid),
        IpAddr::V6(_) => virtual_mac_v6(vrid),
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_ARP: u16 = 0x0806;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERNET_HEADER_LEN: usize = 14;

/// Length of [`gratuitous_arp`]'s frame: Ethernet header and ARP body, before
/// the padding to 60 bytes that the driver adds.
pub const GRATUITOUS_ARP_LEN: usize = ETHERNET_HEADER_LEN + 28;

/// A gratuitous ARP frame announcing `vip` at `mac`, ready for an
/// `AF_PACKET` socket.
///
/// The form is RFC 5227 §3's ARP Announcement (which RFC 5798 §8.1.2's
/// "gratuitous ARP" refers to): an ARP *request* broadcast to ff:ff:ff:ff:ff:ff
/// with the sender and target protocol addresses both set to the VIP and the
/// target hardware address zero. A request rather than a reply because every
/// host processes requests, while some ignore unsolicited replies.
///
/// `mac` is the virtual MAC ([`virtual_mac_v4`]) when the VIP lives on a
/// VRRP MAC interface, otherwise the interface's own MAC.
pub fn gratuitous_arp(mac: MacAddr, vip: Ipv4Addr) -> [u8; GRATUITOUS_ARP_LEN] {
    let mut frame = [0u8; GRATUITOUS_ARP_LEN];
    frame[0..6].copy_from_slice(&MacAddr::BROADCAST.0);
    frame[6..12].copy_from_slice(&mac.0);
    frame[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
    let arp = &mut frame[ETHERNET_HEADER_LEN..];
    arp[0..2].copy_from_slice(&1u16.to_be_bytes()); // hardware type: Ethernet
    arp[2..4].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes()); // protocol type
    arp[4] = 6; // hardware address length
    arp[5] = 4; // protocol address length
    arp[6..8].copy_from_slice(&1u16.to_be_bytes()); // operation: request
    arp[8..14].copy_from_slice(&mac.0); // sender hardware address
    arp[14..18].copy_from_slice(&vip.octets()); // sender protocol address
    // Target hardware address stays zero (RFC 5227 §2.3: ignored, SHOULD be 0).
    arp[24..28].copy_from_slice(&vip.octets()); // target protocol address
    frame
}

/// An ARP Probe for `target` (RFC 5227 §2.1.1): a broadcast request with
/// sender protocol address 0.0.0.0, so no host learns anything from it,
/// which every holder of `target` answers. `vipd verify` counts the
/// answers to find two holders of the VIP.
pub fn arp_probe(mac: MacAddr, target: Ipv4Addr) -> [u8; GRATUITOUS_ARP_LEN] {
    let mut frame = gratuitous_arp(mac, target);
    let arp = &mut frame[ETHERNET_HEADER_LEN..];
    arp[14..18].copy_from_slice(&[0, 0, 0, 0]);
    frame
}

/// The sender of an ARP reply for `target` in `frame` (an Ethernet frame),
/// or `None` when the frame is anything else.
pub fn arp_reply_sender(frame: &[u8], target: Ipv4Addr) -> Option<MacAddr> {
    let arp = frame.get(ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + 28)?;
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let reply = ethertype == ETHERTYPE_ARP
        && arp[0..2] == 1u16.to_be_bytes()
        && arp[2..4] == ETHERTYPE_IPV4.to_be_bytes()
        && arp[4] == 6
        && arp[5] == 4
        && arp[6..8] == 2u16.to_be_bytes()
        && arp[14..18] == target.octets();
    if !reply {
        return None;
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&arp[8..14]);
    Some(MacAddr(mac))
}

/// RFC 4291 §2.7.1: all-nodes link-local multicast.
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

const IPV6_HEADER_LEN: usize = 40;
const ICMPV6_PROTOCOL: u8 = 58;
const ICMPV6_NEIGHBOR_ADVERTISEMENT: u8 = 136;
/// RFC 4861 §4.6.1: option type 2, Target Link-Layer Address.
const OPTION_TARGET_LINK_LAYER_ADDRESS: u8 = 2;

/// Length of the ICMPv6 message [`neighbor_advertisement`] builds: 24 bytes of
/// NA and an 8-byte target link-layer address option.
pub const NEIGHBOR_ADVERTISEMENT_LEN: usize = 32;

/// Length of [`unsolicited_na_frame`]'s frame.
pub const UNSOLICITED_NA_FRAME_LEN: usize =
    ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + NEIGHBOR_ADVERTISEMENT_LEN;

/// The flags of a Neighbor Advertisement (RFC 4861 §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NaFlags {
    /// R: the sender is a router. RFC 5798 §6.4.2 sets it, since VRRP
    /// virtual addresses are normally default gateways; a VIP that is only a
    /// service address (an API server) clears it so hosts do not add a
    /// default route through it.
    pub router: bool,
    /// O: replace existing cache entries. Always set for a takeover.
    pub override_entry: bool,
}

impl NaFlags {
    /// RFC 5798 §6.4.2: R set, S clear, O set.
    pub const VRRP_ROUTER: NaFlags = NaFlags {
        router: true,
        override_entry: true,
    };
    /// O set, R and S clear: a service address, not a gateway.
    pub const SERVICE_ADDRESS: NaFlags = NaFlags {
        router: false,
        override_entry: true,
    };
}

/// The ICMPv6 part of an unsolicited Neighbor Advertisement for `target` at
/// `mac`, checksum computed for a packet from `src` to ff02::1. For a raw
/// ICMPv6 socket (which prepends the IPv6 header itself; send it with hop
/// limit 255, RFC 4861 §7.1.2).
///
/// Solicited (S) is clear: nobody asked (RFC 4861 §7.2.6).
pub fn neighbor_advertisement(
    src: Ipv6Addr,
    target: Ipv6Addr,
    mac: MacAddr,
    flags: NaFlags,
) -> [u8; NEIGHBOR_ADVERTISEMENT_LEN] {
    let mut icmp = [0u8; NEIGHBOR_ADVERTISEMENT_LEN];
    icmp[0] = ICMPV6_NEIGHBOR_ADVERTISEMENT;
    icmp[1] = 0; // code
    // icmp[2..4]: checksum, below
    icmp[4] = (u8::from(flags.router) << 7) | (u8::from(flags.override_entry) << 5);
    icmp[8..24].copy_from_slice(&target.octets());
    icmp[24] = OPTION_TARGET_LINK_LAYER_ADDRESS;
    icmp[25] = 1; // option length in units of 8 bytes
    icmp[26..32].copy_from_slice(&mac.0);
    // RFC 4443 §2.3: the ICMPv6 checksum covers the RFC 8200 §8.1
    // pseudo-header.
    let checksum = Checksum::new()
        .add_pseudo_header(
            IpAddr::V6(src),
            IpAddr::V6(ALL_NODES),
            ICMPV6_PROTOCOL,
            NEIGHBOR_ADVERTISEMENT_LEN as u16,
        )
        .add_bytes(&icmp)
        .finish();
    icmp[2..4].copy_from_slice(&checksum.to_be_bytes());
    icmp
}

/// A whole Ethernet frame carrying an unsolicited Neighbor Advertisement
/// for `target` at `mac`, from `src` to ff02::1 (Ethernet 33:33:00:00:00:01)
/// with hop limit 255, for an `AF_PACKET` socket.
///
/// `src` is an address of the sending interface: its link-local address, or
/// the target itself (RFC 4861 §7.2.4 allows either for an unsolicited NA).
pub fn unsolicited_na_frame(
    src: Ipv6Addr,
    target: Ipv6Addr,
    mac: MacAddr,
    flags: NaFlags,
) -> [u8; UNSOLICITED_NA_FRAME_LEN] {
    let mut frame = [0u8; UNSOLICITED_NA_FRAME_LEN];
    // RFC 2464 §7: IPv6 multicast maps to 33:33 and the group's low 32 bits.
    let group = ALL_NODES.octets();
    frame[0..6].copy_from_slice(&[0x33, 0x33, group[12], group[13], group[14], group[15]]);
    frame[6..12].copy_from_slice(&mac.0);
    frame[12..14].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
    let ip = &mut frame[ETHERNET_HEADER_LEN..ETHERNET_HEADER_LEN + IPV6_HEADER_LEN];
    ip[0] = 0x60; // version 6, traffic class and flow label zero
    ip[4..6].copy_from_slice(&(NEIGHBOR_ADVERTISEMENT_LEN as u16).to_be_bytes());
    ip[6] = ICMPV6_PROTOCOL;
    ip[7] = 255; // RFC 4861 §7.1.2: receivers drop ND with any other hop limit
    ip[8..24].copy_from_slice(&src.octets());
    ip[24..40].copy_from_slice(&ALL_NODES.octets());
    frame[ETHERNET_HEADER_LEN + IPV6_HEADER_LEN..]
        .copy_from_slice(&neighbor_advertisement(src, target, mac, flags));
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_macs() {
        assert_eq!(virtual_mac_v4(51).to_string(), "00:00:5e:00:01:33");
        assert_eq!(virtual_mac_v6(255).to_string(), "00:00:5e:00:02:ff");
        assert_eq!(
            virtual_mac(1, "::1".parse().unwrap()),
            MacAddr([0, 0, 0x5e, 0, 2, 1])
        );
    }

    #[test]
    fn gratuitous_arp_bytes() {
        let frame = gratuitous_arp(virtual_mac_v4(51), Ipv4Addr::new(10, 250, 0, 100));
        let expected: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // broadcast
            0x00, 0x00, 0x5e, 0x00, 0x01, 0x33, // virtual MAC
            0x08, 0x06, // ARP
            0x00, 0x01, 0x08, 0x00, 0x06, 0x04, // Ethernet/IPv4, 6/4
            0x00, 0x01, // request
            0x00, 0x00, 0x5e, 0x00, 0x01, 0x33, // sender MAC
            10, 250, 0, 100, // sender IP
            0, 0, 0, 0, 0, 0, // target MAC
            10, 250, 0, 100, // target IP
        ];
        assert_eq!(frame, expected);
    }

    #[test]
    fn neighbor_advertisement_bytes() {
        let src: Ipv6Addr = "fe80::1".parse().unwrap();
        let target: Ipv6Addr = "2001:db8::100".parse().unwrap();
        let frame = unsolicited_na_frame(src, target, virtual_mac_v6(7), NaFlags::VRRP_ROUTER);
        let mut expected = vec![
            0x33, 0x33, 0x00, 0x00, 0x00, 0x01, // all-nodes multicast MAC
            0x00, 0x00, 0x5e, 0x00, 0x02, 0x07, // virtual MAC
            0x86, 0xdd, // IPv6
            0x60, 0x00, 0x00, 0x00, 0x00, 0x20, 0x3a, 0xff, // payload 32, ICMPv6, hop 255
        ];
        expected.extend_from_slice(&src.octets());
        expected.extend_from_slice(&ALL_NODES.octets());
        expected.extend_from_slice(&[136, 0, 0x00, 0x00, 0xa0, 0, 0, 0]); // checksum patched below
        expected.extend_from_slice(&target.octets());
        expected.extend_from_slice(&[2, 1, 0x00, 0x00, 0x5e, 0x00, 0x02, 0x07]);
        // Checksum worked out by hand: pseudo-header words (fe80 + 1 + ff02 +
        // 1 + 0x20 + 0x3a) plus the message words (0x8800 + 0xa000 + 0x2001
        // + 0x0db8 + 0x0100 + 0x0201 + 0x0000 + 0x5e00 + 0x0207), folded
        // and complemented.
        let words: u32 = [
            0xfe80u32, 0x0001, 0xff02, 0x0001, 0x0020, 0x003a, 0x8800, 0xa000, 0x2001, 0x0db8,
            0x0100, 0x0201, 0x0000, 0x5e00, 0x0207,
        ]
        .iter()
        .sum();
        let folded = (words & 0xffff) + (words >> 16);
        let folded = (folded & 0xffff) + (folded >> 16);
        let checksum = !(folded as u16);
        expected[14 + 40 + 2..14 + 40 + 4].copy_from_slice(&checksum.to_be_bytes());
        assert_eq!(frame.to_vec(), expected);
        // A correct ICMPv6 checksum makes the whole sum, pseudo-header
        // included, come out as zero.
        let verify = Checksum::new()
            .add_pseudo_header(IpAddr::V6(src), IpAddr::V6(ALL_NODES), 58, 32)
            .add_bytes(&frame[54..])
            .finish();
        assert_eq!(verify, 0);
    }

    #[test]
    fn service_address_flags_clear_router() {
        let na = neighbor_advertisement(
            "fe80::1".parse().unwrap(),
            "2001:db8::1".parse().unwrap(),
            MacAddr([2, 0, 0, 0, 0, 1]),
            NaFlags::SERVICE_ADDRESS,
        );
        assert_eq!(na[4], 0x20);
    }
}

#[cfg(test)]
mod probe_tests {
    use super::*;

    #[test]
    fn a_probe_hides_its_sender_and_a_reply_names_its_holder() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let vip = Ipv4Addr::new(198, 18, 0, 100);
        let probe = arp_probe(mac, vip);
        assert_eq!(
            &probe[ETHERNET_HEADER_LEN + 14..ETHERNET_HEADER_LEN + 18],
            &[0, 0, 0, 0]
        );
        assert_eq!(
            &probe[ETHERNET_HEADER_LEN + 24..ETHERNET_HEADER_LEN + 28],
            &vip.octets()
        );
        // A request is not a reply.
        assert_eq!(arp_reply_sender(&probe, vip), None);
        let holder = MacAddr([2, 0, 0, 0, 0, 9]);
        let mut reply = probe;
        reply[ETHERNET_HEADER_LEN + 7] = 2;
        reply[ETHERNET_HEADER_LEN + 8..ETHERNET_HEADER_LEN + 14].copy_from_slice(&holder.0);
        reply[ETHERNET_HEADER_LEN + 14..ETHERNET_HEADER_LEN + 18].copy_from_slice(&vip.octets());
        assert_eq!(arp_reply_sender(&reply, vip), Some(holder));
        assert_eq!(
            arp_reply_sender(&reply, Ipv4Addr::new(198, 18, 0, 101)),
            None
        );
        assert_eq!(arp_reply_sender(&reply[..20], vip), None);
    }
}
