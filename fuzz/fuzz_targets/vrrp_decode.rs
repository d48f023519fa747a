//! Whatever arrives on the VRRP socket goes through these decoders: they
//! must never panic, and whatever they accept must encode to a message that
//! decodes to the same advertisement. (Not to the same bytes: RFC 5798
//! §5.2.7's reserved bits are ignored on receipt and sent as zero.)
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::fuzz_target;
use vipd_core::vrrp::{Advertisement, Auth, ChecksumMode, DecodeOptions, Ipv4Header, check_ttl};

fuzz_target!(|data: &[u8]| {
    // The raw IPv4 path: header, TTL rule, then the VRRP message.
    if let Ok((header, payload)) = Ipv4Header::parse(data) {
        let _ = check_ttl(header.ttl);
        decode_both_ways(payload, IpAddr::V4(header.src), IpAddr::V4(header.dst));
    }
    // The message alone, as IPv4 and as IPv6 (whose header the kernel strips).
    decode_both_ways(data, IpAddr::V4(Ipv4Addr::new(198, 18, 0, 2)), IpAddr::V4(Ipv4Addr::new(224, 0, 0, 18)));
    decode_both_ways(
        data,
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2)),
        IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12)),
    );
});

fn decode_both_ways(message: &[u8], src: IpAddr, dst: IpAddr) {
    for checksum_mode in [ChecksumMode::Keepalived, ChecksumMode::Rfc9568] {
        for auth in [None, Some(Auth::simple_password(b"s3cr3t"))] {
            let options = DecodeOptions { checksum_mode, auth };
            if let Ok(advert) = Advertisement::decode(message, src, dst, &options) {
                let encoded = advert.encode(src, dst, checksum_mode).expect("a decoded advert encodes");
                assert_eq!(encoded.len(), message.len(), "re-encoding changed the length");
                let again = Advertisement::decode(&encoded, src, dst, &options);
                assert_eq!(again, Ok(advert), "decode, encode, decode changed the advertisement");
            }
        }
    }
}
