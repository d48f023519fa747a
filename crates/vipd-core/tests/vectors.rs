//! Byte-for-byte checks against advertisements captured from keepalived 2.2.7
//! (see `tests/vectors/*.hex`: an Ethernet frame, its IPv4 header and its
//! VRRP payload). Settings of every capture: VRID 51, VIP 10.250.0.100,
//! sender 10.250.0.1, priority 150 (0 in the graceful-stop capture).

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use vipd_core::vrrp::packet::PROTOCOL;
use vipd_core::vrrp::{
    Advertisement, Auth, Centiseconds, ChecksumMode, DecodeError, DecodeOptions, Ipv4Header,
    Version, VersionFields, check_ttl,
};

struct Vector {
    name: &'static str,
    frame: Vec<u8>,
    ip_header: Vec<u8>,
    payload: Vec<u8>,
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => panic!("not a hex digit: {}", b as char),
        })
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits.chunks(2).map(|p| p[0] << 4 | p[1]).collect()
}

/// Splits a capture file into its three hex sections.
fn load(name: &'static str, text: &str) -> Vector {
    let mut section = "";
    let (mut frame, mut ip_header, mut payload) = (String::new(), String::new(), String::new());
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix('#') {
            section = match comment.trim() {
                "full ethernet frame:" => "frame",
                "IPv4 header:" => "ip",
                "VRRP payload:" => "vrrp",
                _ => section,
            };
            continue;
        }
        match section {
            "frame" => frame.push_str(line),
            "ip" => ip_header.push_str(line),
            "vrrp" => payload.push_str(line),
            _ => {}
        }
    }
    Vector {
        name,
        frame: hex(&frame),
        ip_header: hex(&ip_header),
        payload: hex(&payload),
    }
}

macro_rules! vector {
    ($name:literal) => {
        load($name, include_str!(concat!("vectors/", $name, ".hex")))
    };
}

const SENDER: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 2);
const GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 250, 0, 100);

struct Expected {
    dst: Ipv4Addr,
    identification: u16,
    priority: u8,
    fields: VersionFields,
    checksum: u16,
}

fn v2_fields() -> VersionFields {
    VersionFields::V2 {
        advert_interval_secs: 1,
        auth: Auth::simple_password(b"s3cr3t"),
    }
}

fn v3_fields(centiseconds: u16) -> VersionFields {
    VersionFields::V3 {
        max_advert_interval: Centiseconds(centiseconds),
    }
}

/// Checks one capture end to end: frame layout, IPv4 header, VRRP fields,
/// and that re-encoding the decoded values gives back the same bytes.
fn check(vector: &Vector, expected: &Expected) {
    let name = vector.name;
    // The frame is Ethernet + IPv4 header + VRRP payload, nothing else.
    let mut rebuilt = vector.frame[..14].to_vec();
    rebuilt.extend_from_slice(&vector.ip_header);
    rebuilt.extend_from_slice(&vector.payload);
    assert_eq!(
        rebuilt, vector.frame,
        "{name}: sections disagree with the frame"
    );
    assert_eq!(
        &vector.frame[6..12],
        &[0x02, 0x00, 0x0a, 0xfa, 0x00, 0x01],
        "{name}"
    );
    assert_eq!(&vector.frame[12..14], &[0x08, 0x00], "{name}: ethertype");

    // IPv4 header, as a raw socket would hand it over.
    let ip_packet = &vector.frame[14..];
    let (header, payload) = Ipv4Header::parse(ip_packet).unwrap();
    assert_eq!(header.header_len, 20, "{name}");
    assert_eq!(header.tos, 0xc0, "{name}: keepalived sends network control");
    assert_eq!(usize::from(header.total_len), ip_packet.len(), "{name}");
    assert_eq!(header.identification, expected.identification, "{name}");
    assert_eq!(header.flags_fragment, 0, "{name}");
    assert_eq!(header.ttl, 255, "{name}");
    assert_eq!(check_ttl(header.ttl), Ok(()), "{name}");
    assert_eq!(header.protocol, PROTOCOL, "{name}");
    assert_eq!(header.src, SENDER, "{name}");
    assert_eq!(header.dst, expected.dst, "{name}");
    assert_eq!(payload, &vector.payload[..], "{name}");
    assert_eq!(
        header.encode().to_vec(),
        vector.ip_header,
        "{name}: IPv4 re-encode"
    );

    // VRRP payload.
    let (src, dst) = (IpAddr::V4(header.src), IpAddr::V4(header.dst));
    let auth = match expected.fields {
        VersionFields::V2 { auth, .. } => Some(auth),
        VersionFields::V3 { .. } => None,
    };
    let options = DecodeOptions {
        checksum_mode: ChecksumMode::Keepalived,
        auth,
    };
    let advert = Advertisement::decode(payload, src, dst, &options)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(advert.vrid, 51, "{name}");
    assert_eq!(advert.priority, expected.priority, "{name}");
    assert_eq!(advert.addresses, vec![IpAddr::V4(VIP)], "{name}");
    assert_eq!(advert.fields, expected.fields, "{name}");
    let received_checksum = u16::from_be_bytes([payload[6], payload[7]]);
    assert_eq!(received_checksum, expected.checksum, "{name}");

    let encoded = advert.encode(src, dst, ChecksumMode::Keepalived).unwrap();
    assert_eq!(encoded, vector.payload, "{name}: VRRP re-encode");
}

#[test]
fn keepalived_v2_multicast() {
    check(
        &vector!("vrrp_v2"),
        &Expected {
            dst: GROUP,
            identification: 2,
            priority: 150,
            fields: v2_fields(),
            checksum: 0x3252,
        },
    );
}

#[test]
fn keepalived_v2_priority_zero_on_stop() {
    check(
        &vector!("vrrp_v2_prio0"),
        &Expected {
            dst: GROUP,
            identification: 2,
            priority: 0,
            fields: v2_fields(),
            checksum: 0xc852,
        },
    );
}

#[test]
fn keepalived_v2_unicast() {
    check(
        &vector!("vrrp_v2_ucast"),
        &Expected {
            dst: PEER,
            identification: 2,
            priority: 150,
            fields: v2_fields(),
            checksum: 0x3252,
        },
    );
}

#[test]
fn keepalived_v3_multicast() {
    check(
        &vector!("vrrp_v3"),
        &Expected {
            dst: GROUP,
            identification: 2,
            priority: 150,
            fields: v3_fields(100),
            checksum: 0x417f,
        },
    );
}

#[test]
fn keepalived_v3_multicast_10cs() {
    check(
        &vector!("vrrp_v3_adv10cs"),
        &Expected {
            dst: GROUP,
            identification: 3,
            priority: 150,
            fields: v3_fields(10),
            checksum: 0x41d9,
        },
    );
}

#[test]
fn keepalived_v3_unicast() {
    check(
        &vector!("vrrp_v3_ucast"),
        &Expected {
            dst: PEER,
            identification: 2,
            priority: 150,
            fields: v3_fields(10),
            checksum: 0x16f0,
        },
    );
}

/// keepalived 2.2.7's default VRRPv3-over-IPv4 checksum includes the IPv4
/// pseudo-header: decoding its adverts as RFC 9568 (message only) fails, and
/// the error says the peer uses the pseudo-header.
#[test]
fn keepalived_v3_checksum_includes_the_ipv4_pseudo_header() {
    let rfc9568 = DecodeOptions {
        checksum_mode: ChecksumMode::Rfc9568,
        auth: None,
    };
    for (vector, dst, message_only_checksum) in [
        (vector!("vrrp_v3"), GROUP, 0x2d09),
        (vector!("vrrp_v3_adv10cs"), GROUP, 0x2d63),
        (vector!("vrrp_v3_ucast"), PEER, 0x2d63),
    ] {
        let (src, dst) = (IpAddr::V4(SENDER), IpAddr::V4(dst));
        let err = Advertisement::decode(&vector.payload, src, dst, &rfc9568).unwrap_err();
        assert!(
            matches!(
                err,
                DecodeError::ChecksumMismatch {
                    peer_seems_to_use: Some(ChecksumMode::Keepalived),
                    ..
                }
            ),
            "{}: {err:?}",
            vector.name
        );
        assert_eq!(err.reason(), "bad_checksum_peer_uses_pseudo_header");

        // The message-only sum is a different number from what is on the wire.
        let advert =
            Advertisement::decode(&vector.payload, src, dst, &DecodeOptions::default()).unwrap();
        let message_only = advert.encode(src, dst, ChecksumMode::Rfc9568).unwrap();
        assert_eq!(
            u16::from_be_bytes([message_only[6], message_only[7]]),
            message_only_checksum,
            "{}",
            vector.name
        );
        assert_ne!(message_only, vector.payload);
    }
    // The unicast and multicast 10cs captures differ only in the destination
    // address, yet their checksums differ: the sum covers the destination.
    let multicast = vector!("vrrp_v3_adv10cs");
    let unicast = vector!("vrrp_v3_ucast");
    assert_eq!(multicast.payload[..6], unicast.payload[..6]);
    assert_eq!(multicast.payload[8..], unicast.payload[8..]);
    assert_ne!(multicast.payload[6..8], unicast.payload[6..8]);
}

/// VRRPv2 never uses a pseudo-header: the same bytes verify whether sent to
/// the group or to a unicast peer.
#[test]
fn keepalived_v2_checksum_is_message_only() {
    let multicast = vector!("vrrp_v2");
    let unicast = vector!("vrrp_v2_ucast");
    assert_eq!(multicast.payload, unicast.payload);
    let options = DecodeOptions {
        checksum_mode: ChecksumMode::Rfc9568,
        auth: Some(Auth::simple_password(b"s3cr3t")),
    };
    let src = IpAddr::V4(SENDER);
    for dst in [GROUP, PEER] {
        Advertisement::decode(&multicast.payload, src, IpAddr::V4(dst), &options).unwrap();
    }
}

#[test]
fn keepalived_v2_wrong_password_is_rejected() {
    let vector = vector!("vrrp_v2");
    let options = DecodeOptions {
        checksum_mode: ChecksumMode::Keepalived,
        auth: Some(Auth::simple_password(b"s3cr3t!")),
    };
    let err = Advertisement::decode(
        &vector.payload,
        IpAddr::V4(SENDER),
        IpAddr::V4(GROUP),
        &options,
    )
    .unwrap_err();
    assert_eq!(err.reason(), "bad_password");
}

#[test]
fn decoded_vectors_expose_version_and_interval() {
    let src = IpAddr::V4(SENDER);
    let v3 = vector!("vrrp_v3_adv10cs");
    let advert = Advertisement::decode(
        &v3.payload,
        src,
        IpAddr::V4(GROUP),
        &DecodeOptions::default(),
    )
    .unwrap();
    assert_eq!(advert.version(), Version::V3);
    assert_eq!(advert.advert_interval(), Duration::from_millis(100));
    let v2 = vector!("vrrp_v2");
    let advert = Advertisement::decode(
        &v2.payload,
        src,
        IpAddr::V4(GROUP),
        &DecodeOptions::default(),
    )
    .unwrap();
    assert_eq!(advert.version(), Version::V2);
    assert_eq!(advert.advert_interval(), Duration::from_secs(1));
}
