//! Property tests of the codec: encode → decode gives the same value back,
//! any single-byte corruption is caught, and no input makes decoding panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::prelude::*;
use vipd_core::vrrp::{
    Advertisement, Auth, Centiseconds, ChecksumMode, DecodeOptions, Ipv4Header, VersionFields,
};

fn v4() -> impl Strategy<Value = IpAddr> {
    any::<u32>().prop_map(|a| IpAddr::V4(Ipv4Addr::from(a)))
}

fn v6() -> impl Strategy<Value = IpAddr> {
    any::<u128>().prop_map(|a| IpAddr::V6(Ipv6Addr::from(a)))
}

fn mode() -> impl Strategy<Value = ChecksumMode> {
    prop_oneof![Just(ChecksumMode::Keepalived), Just(ChecksumMode::Rfc9568)]
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        Just(Auth::None),
        any::<[u8; 8]>().prop_map(Auth::SimplePassword)
    ]
}

/// An advertisement with its source and destination addresses.
fn packet() -> impl Strategy<Value = (Advertisement, IpAddr, IpAddr)> {
    let v2 = (
        any::<u8>(),
        any::<u8>(),
        prop::collection::vec(v4(), 1..=20),
        1..=255u8,
        auth(),
        v4(),
        v4(),
    )
        .prop_map(|(vrid, priority, addresses, secs, auth, src, dst)| {
            let fields = VersionFields::V2 {
                advert_interval_secs: secs,
                auth,
            };
            let advert = Advertisement {
                vrid,
                priority,
                addresses,
                fields,
            };
            (advert, src, dst)
        });
    let v3 = (any::<u8>(), any::<u8>(), 1..=0x0fffu16, any::<bool>()).prop_flat_map(
        |(vrid, priority, cs, ipv6)| {
            let (addr, ends) = if ipv6 {
                (v6().boxed(), (v6(), v6()).boxed())
            } else {
                (v4().boxed(), (v4(), v4()).boxed())
            };
            (prop::collection::vec(addr, 1..=20), ends).prop_map(move |(addresses, (src, dst))| {
                let fields = VersionFields::V3 {
                    max_advert_interval: Centiseconds(cs),
                };
                let advert = Advertisement {
                    vrid,
                    priority,
                    addresses,
                    fields,
                };
                (advert, src, dst)
            })
        },
    );
    prop_oneof![v2, v3]
}

fn options_for(advert: &Advertisement, checksum_mode: ChecksumMode) -> DecodeOptions {
    let auth = match advert.fields {
        VersionFields::V2 { auth, .. } => Some(auth),
        VersionFields::V3 { .. } => None,
    };
    DecodeOptions {
        checksum_mode,
        auth,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_identity((advert, src, dst) in packet(), mode in mode()) {
        let bytes = advert.encode(src, dst, mode).unwrap();
        prop_assert_eq!(bytes.len(), advert.encoded_len());
        let decoded = Advertisement::decode(&bytes, src, dst, &options_for(&advert, mode)).unwrap();
        prop_assert_eq!(&decoded, &advert);
        // Without a configured auth, the auth is reported rather than checked.
        let lenient = DecodeOptions { checksum_mode: mode, auth: None };
        prop_assert_eq!(Advertisement::decode(&bytes, src, dst, &lenient).unwrap(), advert);
        // And decoding is the inverse of encoding byte for byte.
        prop_assert_eq!(decoded.encode(src, dst, mode).unwrap(), bytes);
    }

    #[test]
    fn any_single_byte_change_is_rejected(
        (advert, src, dst) in packet(),
        mode in mode(),
        index in any::<prop::sample::Index>(),
        delta in 1..=255u8,
    ) {
        let mut bytes = advert.encode(src, dst, mode).unwrap();
        let i = index.index(bytes.len());
        bytes[i] = bytes[i].wrapping_add(delta);
        // One byte moves the one's complement sum by at most 0xff00, never a
        // multiple of 0xffff, so the checksum (or an earlier check) catches it.
        let result = Advertisement::decode(&bytes, src, dst, &options_for(&advert, mode));
        prop_assert!(result.is_err(), "byte {} changed, still decoded: {:?}", i, result);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
        ipv6 in any::<bool>(),
        mode in mode(),
        auth in prop::option::of(auth()),
    ) {
        let (src, dst) = if ipv6 {
            (IpAddr::V6(Ipv6Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST))
        } else {
            (IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4(Ipv4Addr::LOCALHOST))
        };
        let options = DecodeOptions { checksum_mode: mode, auth };
        if let Err(e) = Advertisement::decode(&bytes, src, dst, &options) {
            // Every error has a name and a message.
            prop_assert!(!e.reason().is_empty());
            prop_assert!(!e.to_string().is_empty());
        }
        if let Err(e) = Ipv4Header::parse(&bytes) {
            prop_assert!(!e.reason().is_empty());
        }
    }

    #[test]
    fn plausible_headers_never_panic(
        version_type in prop_oneof![Just(0x21u8), Just(0x31u8), any::<u8>()],
        count in any::<u8>(),
        rest in prop::collection::vec(any::<u8>(), 0..120),
    ) {
        // Headers that pass the first checks, so the length and address
        // arithmetic runs on nonsense counts.
        let mut bytes = vec![version_type, 1, 100, count, 0, 1, 0, 0];
        bytes.extend_from_slice(&rest);
        let (src, dst) = (IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V4(Ipv4Addr::LOCALHOST));
        let _ = Advertisement::decode(&bytes, src, dst, &DecodeOptions::default());
    }

    #[test]
    fn ipv4_header_round_trip(
        tos in any::<u8>(),
        id in any::<u16>(),
        ttl in any::<u8>(),
        src in any::<u32>(),
        dst in any::<u32>(),
        payload in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let header = Ipv4Header {
            header_len: 20,
            tos,
            total_len: 20 + payload.len() as u16,
            identification: id,
            flags_fragment: 0,
            ttl,
            protocol: 112,
            header_checksum: 0,
            src: Ipv4Addr::from(src),
            dst: Ipv4Addr::from(dst),
        };
        let mut packet = header.encode().to_vec();
        packet.extend_from_slice(&payload);
        let (parsed, parsed_payload) = Ipv4Header::parse(&packet).unwrap();
        prop_assert_eq!(parsed_payload, &payload[..]);
        prop_assert_eq!(parsed.encode().to_vec(), packet[..20].to_vec());
        prop_assert_eq!(Ipv4Header { header_checksum: 0, ..parsed }, header);
    }
}
