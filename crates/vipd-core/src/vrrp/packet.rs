//! VRRP advertisement codec: VRRPv2 (RFC 3768) and VRRPv3 (RFC 5798, updated
//! by RFC 9568), IPv4 and IPv6, plus the IPv4 header that raw sockets deliver
//! in front of it.
//!
//! Pure functions only: bytes in, typed values or a typed [`DecodeError`] out.
//! Every error variant is a reason to drop a packet and has a stable
//! snake_case [`DecodeError::reason`] for a counter label.
//!
//! # The VRRPv3-over-IPv4 checksum
//!
//! RFC 5798 §5.2.8 defines the checksum over the VRRP message and "a
//! pseudo-header as defined in Section 8.1 of \[RFC2460\]" without saying
//! whether that applies to IPv4 too. Two readings shipped:
//!
//! - With an IPv4 pseudo-header (source, destination, zero, protocol 112,
//!   VRRP length). keepalived does this by default (its `v3_checksum_as_v2`
//!   option turns it off); so do Wireshark's checker and FRR's default. The
//!   keepalived 2.2.7 captures in `tests/vectors/` carry this checksum: the
//!   multicast and unicast v3 captures have identical VRRP bytes but
//!   different checksums (0x41d9 and 0x16f0), which only a sum covering the
//!   destination address can produce. This is [`ChecksumMode::Keepalived`].
//! - Over the VRRP message alone, as VRRPv2 does. RFC 9568 §5.2.8 settles the
//!   question this way (the pseudo-header is for IPv6 only, change 4 of its
//!   §1.2) and several router vendors always did it. This is
//!   [`ChecksumMode::Rfc9568`].
//!
//! IPv6 always uses the RFC 8200 §8.1 pseudo-header and VRRPv2 never does, so
//! the mode only matters for VRRPv3 over IPv4. When a received checksum fails
//! but the other convention matches, the error says so
//! ([`DecodeError::ChecksumMismatch::peer_seems_to_use`]): that is a
//! configuration mismatch between routers, not corruption.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::checksum::Checksum;
use super::timer::Centiseconds;

/// RFC 5798 §5.2.4: the priority a master sends when it stops.
pub const PRIORITY_STOP: u8 = 0;
/// RFC 5798 §5.2.4: the priority of the virtual addresses' owner.
pub const PRIORITY_OWNER: u8 = 255;

/// IANA protocol number of VRRP (RFC 5798 §5.1.1.4, §5.1.2.3).
pub const PROTOCOL: u8 = 112;

/// The only TTL / hop limit a VRRP packet may carry (RFC 5798 §5.1.1.3, §7.1).
pub const REQUIRED_TTL: u8 = 255;

/// RFC 5798 §5.1.1.2: the IPv4 multicast group VRRP advertises to.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);

/// RFC 5798 §5.1.2.2: the IPv6 multicast group VRRP advertises to.
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);

/// Version/type, VRID, priority, count, auth type or rsvd/interval, checksum.
const FIXED_HEADER_LEN: usize = 8;

/// RFC 3768 §5.3.10: two 32-bit words of authentication data, always present.
const V2_AUTH_DATA_LEN: usize = 8;

/// RFC 5798 §5.2.2: the only type defined is ADVERTISEMENT.
const TYPE_ADVERTISEMENT: u8 = 1;

/// RFC 3768 §5.3.6: no authentication.
const AUTH_TYPE_NONE: u8 = 0;
/// RFC 2338 §5.3.6 (kept "for backwards compatibility" by RFC 3768):
/// simple text password.
const AUTH_TYPE_SIMPLE: u8 = 1;

/// The protocol version of an advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// RFC 3768: IPv4 only, interval in seconds, optional simple password.
    V2,
    /// RFC 5798 / RFC 9568: IPv4 and IPv6, interval in centiseconds.
    V3,
}

impl Version {
    pub const fn number(self) -> u8 {
        match self {
            Version::V2 => 2,
            Version::V3 => 3,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VRRPv{}", self.number())
    }
}

/// Which checksum convention VRRPv3 over IPv4 uses (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ChecksumMode {
    /// Sum over an IPv4 pseudo-header and the message: RFC 5798 as keepalived
    /// (its default), Wireshark and FRR read it. The default, because the
    /// routers vipd must interoperate with during a migration run keepalived.
    #[default]
    Keepalived,
    /// Sum over the VRRP message alone, as RFC 9568 §5.2.8 specifies for
    /// IPv4 (keepalived calls this `v3_checksum_as_v2`).
    Rfc9568,
}

impl ChecksumMode {
    /// The other convention.
    pub const fn other(self) -> ChecksumMode {
        match self {
            ChecksumMode::Keepalived => ChecksumMode::Rfc9568,
            ChecksumMode::Rfc9568 => ChecksumMode::Keepalived,
        }
    }

    const fn uses_ipv4_pseudo_header(self) -> bool {
        matches!(self, ChecksumMode::Keepalived)
    }
}

/// VRRPv2 authentication (RFC 3768 §5.3.6, §10; RFC 2338 §5.3.6.1).
///
/// `Debug` does not print the password, so an advertisement can be logged.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Auth {
    /// Type 0. The eight authentication bytes are sent as zeros and ignored
    /// on receipt.
    #[default]
    None,
    /// Type 1: the password in clear text, zero padded to eight bytes. Not a
    /// security measure (anyone on the link reads it); it only keeps two
    /// clusters that share a VRID on one segment apart.
    SimplePassword([u8; 8]),
}

impl Auth {
    /// A simple password as keepalived builds it: at most eight bytes (a
    /// longer one is cut, as keepalived does), zero padded.
    pub fn simple_password(password: &[u8]) -> Auth {
        let mut data = [0u8; 8];
        let len = password.len().min(8);
        data[..len].copy_from_slice(&password[..len]);
        Auth::SimplePassword(data)
    }

    /// The Auth Type field value.
    pub const fn type_code(&self) -> u8 {
        match self {
            Auth::None => AUTH_TYPE_NONE,
            Auth::SimplePassword(_) => AUTH_TYPE_SIMPLE,
        }
    }

    fn data(&self) -> [u8; 8] {
        match self {
            Auth::None => [0; 8],
            Auth::SimplePassword(data) => *data,
        }
    }
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::SimplePassword(_) => f.write_str("SimplePassword(<redacted>)"),
        }
    }
}

/// The fields whose meaning depends on the version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionFields {
    /// RFC 3768 §5.3.7: the advertisement interval in whole seconds, and the
    /// authentication of §5.3.6.
    V2 {
        advert_interval_secs: u8,
        auth: Auth,
    },
    /// RFC 5798 §5.2.7: the sender's advertisement interval, 12 bits of
    /// centiseconds (the four reserved bits above it are sent as zero and
    /// ignored on receipt, §5.2.6).
    V3 { max_advert_interval: Centiseconds },
}

/// A decoded VRRP advertisement.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Advertisement {
    /// RFC 5798 §5.2.3: Virtual Router Identifier, 1-255.
    pub vrid: u8,
    /// RFC 5798 §5.2.4: 255 = address owner, 1-254 = backups, 0 = the master
    /// is leaving.
    pub priority: u8,
    /// RFC 5798 §5.2.9: the virtual addresses, all of the family of the IP
    /// header that carries the advertisement.
    pub addresses: Vec<IpAddr>,
    pub fields: VersionFields,
}

impl Advertisement {
    pub fn version(&self) -> Version {
        match self.fields {
            VersionFields::V2 { .. } => Version::V2,
            VersionFields::V3 { .. } => Version::V3,
        }
    }

    /// The interval the sender advertises at.
    pub fn advert_interval(&self) -> Duration {
        match self.fields {
            VersionFields::V2 {
                advert_interval_secs,
                ..
            } => Duration::from_secs(u64::from(advert_interval_secs)),
            VersionFields::V3 {
                max_advert_interval,
            } => max_advert_interval.to_duration(),
        }
    }

    /// The length of the encoded message.
    pub fn encoded_len(&self) -> usize {
        let per_address = match self.addresses.first() {
            Some(IpAddr::V6(_)) => 16,
            _ => 4,
        };
        let auth = match self.fields {
            VersionFields::V2 { .. } => V2_AUTH_DATA_LEN,
            VersionFields::V3 { .. } => 0,
        };
        FIXED_HEADER_LEN + per_address * self.addresses.len() + auth
    }

    /// Encodes the message, checksum included.
    ///
    /// `src` and `dst` are the addresses of the IP header that will carry it:
    /// the checksum covers them for IPv6 and, in [`ChecksumMode::Keepalived`],
    /// for VRRPv3 over IPv4.
    pub fn encode(
        &self,
        src: IpAddr,
        dst: IpAddr,
        checksum_mode: ChecksumMode,
    ) -> Result<Vec<u8>, EncodeError> {
        let mut buf = Vec::with_capacity(self.encoded_len());
        self.encode_into(src, dst, checksum_mode, &mut buf)?;
        Ok(buf)
    }

    /// Like [`Advertisement::encode`], appending to `buf` (which is left
    /// unchanged on error).
    pub fn encode_into(
        &self,
        src: IpAddr,
        dst: IpAddr,
        checksum_mode: ChecksumMode,
        buf: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let ipv6 = same_family(src, dst).ok_or(EncodeError::EndpointFamilyMismatch)?;
        if self.addresses.is_empty() {
            return Err(EncodeError::NoAddresses);
        }
        let count =
            u8::try_from(self.addresses.len()).map_err(|_| EncodeError::TooManyAddresses {
                count: self.addresses.len(),
            })?;
        if self.addresses.iter().any(|a| a.is_ipv6() != ipv6) {
            return Err(EncodeError::AddressFamilyMismatch);
        }
        let version = self.version();
        // RFC 3768 is IPv4 only; IPv6 needs VRRPv3 (RFC 5798 §1).
        if ipv6 && version == Version::V2 {
            return Err(EncodeError::V2OverIpv6);
        }
        let interval_or_auth: [u8; 2] = match self.fields {
            VersionFields::V2 {
                advert_interval_secs,
                auth,
            } => [auth.type_code(), advert_interval_secs],
            VersionFields::V3 {
                max_advert_interval,
            } => {
                if max_advert_interval > Centiseconds::MAX {
                    return Err(EncodeError::IntervalOutOfRange {
                        centiseconds: max_advert_interval.0,
                    });
                }
                max_advert_interval.0.to_be_bytes()
            }
        };

        let start = buf.len();
        buf.push(version.number() << 4 | TYPE_ADVERTISEMENT);
        buf.push(self.vrid);
        buf.push(self.priority);
        buf.push(count);
        buf.extend_from_slice(&interval_or_auth);
        buf.extend_from_slice(&[0, 0]); // checksum, filled in below
        for address in &self.addresses {
            match address {
                IpAddr::V4(a) => buf.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => buf.extend_from_slice(&a.octets()),
            }
        }
        if let VersionFields::V2 { auth, .. } = self.fields {
            buf.extend_from_slice(&auth.data());
        }
        let message = &buf[start..];
        let checksum = vrrp_checksum(message, version, src, dst, checksum_mode);
        buf[start + 6..start + 8].copy_from_slice(&checksum.to_be_bytes());
        Ok(())
    }

    /// Decodes and validates a VRRP message (the IP payload).
    ///
    /// `src` and `dst` come from the IP header; they decide the address
    /// family and feed the checksum. Checks run in RFC 5798 §7.1 order
    /// (TTL aside, which [`check_ttl`] does on the IP header): version,
    /// completeness, checksum, then the fields, then RFC 3768 §7.1's
    /// authentication check.
    pub fn decode(
        message: &[u8],
        src: IpAddr,
        dst: IpAddr,
        options: &DecodeOptions,
    ) -> Result<Advertisement, DecodeError> {
        let ipv6 = same_family(src, dst).ok_or(DecodeError::EndpointFamilyMismatch)?;
        if message.len() < FIXED_HEADER_LEN {
            return Err(DecodeError::TooShort { len: message.len() });
        }
        // RFC 5798 §7.1: MUST verify the version.
        let version = match message[0] >> 4 {
            2 => Version::V2,
            3 => Version::V3,
            other => return Err(DecodeError::BadVersion { version: other }),
        };
        // RFC 5798 §5.2.2: a packet of unknown type MUST be discarded.
        let kind = message[0] & 0x0f;
        if kind != TYPE_ADVERTISEMENT {
            return Err(DecodeError::BadType { kind });
        }
        if ipv6 && version == Version::V2 {
            return Err(DecodeError::V2OverIpv6);
        }
        let vrid = message[1];
        let priority = message[2];
        let count = usize::from(message[3]);
        // RFC 9568 §5.2.5: the minimum address count is 1.
        if count == 0 {
            return Err(DecodeError::NoAddresses);
        }
        // RFC 5798 §7.1: MUST verify the packet holds the complete message
        // (RFC 3768 §7.1: including the authentication data).
        let address_len = if ipv6 { 16 } else { 4 };
        let auth_len = match version {
            Version::V2 => V2_AUTH_DATA_LEN,
            Version::V3 => 0,
        };
        let expected = FIXED_HEADER_LEN + count * address_len + auth_len;
        if message.len() < expected {
            return Err(DecodeError::Truncated {
                expected,
                actual: message.len(),
            });
        }
        if message.len() > expected {
            return Err(DecodeError::LengthMismatch {
                expected,
                actual: message.len(),
            });
        }
        // RFC 5798 §7.1: MUST verify the checksum.
        let received = u16::from_be_bytes([message[6], message[7]]);
        let computed = vrrp_checksum(message, version, src, dst, options.checksum_mode);
        if received != computed {
            let other = options.checksum_mode.other();
            let peer_seems_to_use = (version == Version::V3
                && !ipv6
                && vrrp_checksum(message, version, src, dst, other) == received)
                .then_some(other);
            return Err(DecodeError::ChecksumMismatch {
                received,
                computed,
                peer_seems_to_use,
            });
        }

        let addresses = message[FIXED_HEADER_LEN..FIXED_HEADER_LEN + count * address_len]
            .chunks_exact(address_len)
            .map(|chunk| {
                if ipv6 {
                    let mut octets = [0u8; 16];
                    octets.copy_from_slice(chunk);
                    IpAddr::V6(Ipv6Addr::from(octets))
                } else {
                    IpAddr::V4(Ipv4Addr::new(chunk[0], chunk[1], chunk[2], chunk[3]))
                }
            })
            .collect();

        let fields = match version {
            Version::V2 => {
                let advert_interval_secs = message[5];
                if advert_interval_secs == 0 {
                    return Err(DecodeError::ZeroAdvertInterval);
                }
                // The length check above made the message exactly `expected`
                // bytes, so the last eight are the authentication data.
                let mut auth_data = [0u8; V2_AUTH_DATA_LEN];
                auth_data.copy_from_slice(&message[expected - V2_AUTH_DATA_LEN..]);
                let auth = match message[4] {
                    AUTH_TYPE_NONE => Auth::None,
                    AUTH_TYPE_SIMPLE => Auth::SimplePassword(auth_data),
                    auth_type => return Err(DecodeError::UnsupportedAuthType { auth_type }),
                };
                // RFC 3768 §7.1: MUST verify the Auth Type matches the local
                // method and perform it.
                if let Some(expected_auth) = &options.auth {
                    if expected_auth.type_code() != auth.type_code() {
                        return Err(DecodeError::AuthTypeMismatch {
                            expected: expected_auth.type_code(),
                            received: auth.type_code(),
                        });
                    }
                    if *expected_auth != auth {
                        return Err(DecodeError::BadPassword);
                    }
                }
                VersionFields::V2 {
                    advert_interval_secs,
                    auth,
                }
            }
            Version::V3 => {
                // RFC 5798 §5.2.6: the reserved bits are ignored on receipt.
                let centiseconds = u16::from_be_bytes([message[4], message[5]]) & 0x0fff;
                // An interval of zero would make Master_Down_Interval the
                // skew alone, a takeover storm; no implementation sends it.
                if centiseconds == 0 {
                    return Err(DecodeError::ZeroAdvertInterval);
                }
                VersionFields::V3 {
                    max_advert_interval: Centiseconds(centiseconds),
                }
            }
        };

        Ok(Advertisement {
            vrid,
            priority,
            addresses,
            fields,
        })
    }
}

/// What the receiver expects, beyond what the bytes say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// The convention for VRRPv3 over IPv4 (ignored otherwise).
    pub checksum_mode: ChecksumMode,
    /// For VRRPv2: the locally configured authentication. `None` accepts any
    /// known auth type and reports it in the result without checking.
    pub auth: Option<Auth>,
}

/// The checksum of `message` as it should appear in bytes 6-7.
fn vrrp_checksum(
    message: &[u8],
    version: Version,
    src: IpAddr,
    dst: IpAddr,
    mode: ChecksumMode,
) -> u16 {
    let mut sum = Checksum::new();
    // RFC 5798 §5.2.8: computed with the checksum field set to zero.
    sum.add_bytes(&message[..6]).add_bytes(&message[8..]);
    let pseudo_header = match (version, src) {
        // RFC 3768 §5.3.8: VRRPv2 sums the message alone.
        (Version::V2, _) => false,
        // RFC 5798 §5.2.8 / RFC 8200 §8.1: IPv6 always has a pseudo-header.
        (Version::V3, IpAddr::V6(_)) => true,
        // The contested case; see the module docs.
        (Version::V3, IpAddr::V4(_)) => mode.uses_ipv4_pseudo_header(),
    };
    if pseudo_header {
        // The message is at most 8 + 255 * 16 + 8 bytes, well within u16.
        let len = u16::try_from(message.len()).unwrap_or(u16::MAX);
        sum.add_pseudo_header(src, dst, PROTOCOL, len);
    }
    sum.finish()
}

/// `Some(true)` if both are IPv6, `Some(false)` if both are IPv4.
fn same_family(src: IpAddr, dst: IpAddr) -> Option<bool> {
    (src.is_ipv6() == dst.is_ipv6()).then_some(src.is_ipv6())
}

/// Why an [`Advertisement`] cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// RFC 9568 §5.2.5: at least one address.
    NoAddresses,
    /// The count field is eight bits.
    TooManyAddresses { count: usize },
    /// RFC 5798 §5.2.9: one family per advertisement, that of the IP header.
    AddressFamilyMismatch,
    /// Source and destination of different families.
    EndpointFamilyMismatch,
    /// RFC 3768 is IPv4 only.
    V2OverIpv6,
    /// RFC 5798 §5.2.7: 12 bits.
    IntervalOutOfRange { centiseconds: u16 },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::NoAddresses => f.write_str("no virtual address to advertise"),
            EncodeError::TooManyAddresses { count } => {
                write!(f, "{count} virtual addresses, at most 255 fit")
            }
            EncodeError::AddressFamilyMismatch => {
                f.write_str("virtual addresses of a family other than the IP header's")
            }
            EncodeError::EndpointFamilyMismatch => {
                f.write_str("source and destination of different address families")
            }
            EncodeError::V2OverIpv6 => f.write_str("VRRPv2 cannot carry IPv6"),
            EncodeError::IntervalOutOfRange { centiseconds } => {
                write!(f, "advertisement interval {centiseconds}cs exceeds 4095cs")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// Why a received VRRP message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the 8-byte fixed header.
    TooShort { len: usize },
    /// RFC 5798 §7.1: neither 2 nor 3.
    BadVersion { version: u8 },
    /// RFC 5798 §5.2.2: not an ADVERTISEMENT (type 1).
    BadType { kind: u8 },
    /// VRRPv2 arrived over IPv6, which RFC 3768 does not define.
    V2OverIpv6,
    /// RFC 9568 §5.2.5: the address count is zero.
    NoAddresses,
    /// RFC 5798 §7.1: shorter than the address count (and, for v2, the
    /// authentication data) requires.
    Truncated { expected: usize, actual: usize },
    /// Longer than the address count says: the count or the sender is wrong.
    LengthMismatch { expected: usize, actual: usize },
    /// RFC 5798 §7.1: the checksum does not match. `peer_seems_to_use` names
    /// the other VRRPv3-over-IPv4 convention when it would have matched.
    ChecksumMismatch {
        received: u16,
        computed: u16,
        peer_seems_to_use: Option<ChecksumMode>,
    },
    /// An advertisement interval of zero.
    ZeroAdvertInterval,
    /// RFC 3768 §5.3.6: an auth type other than 0 and 1 (type 2, IP
    /// Authentication Header, was removed by RFC 3768).
    UnsupportedAuthType { auth_type: u8 },
    /// RFC 3768 §7.1: the auth type differs from the configured one.
    AuthTypeMismatch { expected: u8, received: u8 },
    /// RFC 3768 §7.1 / RFC 2338 §5.3.6.1: the simple password differs.
    BadPassword,
    /// Source and destination of different address families (a caller bug).
    EndpointFamilyMismatch,
}

impl DecodeError {
    /// A stable snake_case name for counters and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooShort { .. } => "too_short",
            DecodeError::BadVersion { .. } => "bad_version",
            DecodeError::BadType { .. } => "bad_type",
            DecodeError::V2OverIpv6 => "v2_over_ipv6",
            DecodeError::NoAddresses => "no_addresses",
            DecodeError::Truncated { .. } => "truncated",
            DecodeError::LengthMismatch { .. } => "length_mismatch",
            DecodeError::ChecksumMismatch {
                peer_seems_to_use, ..
            } => match peer_seems_to_use {
                None => "bad_checksum",
                Some(ChecksumMode::Keepalived) => "bad_checksum_peer_uses_pseudo_header",
                Some(ChecksumMode::Rfc9568) => "bad_checksum_peer_omits_pseudo_header",
            },
            DecodeError::ZeroAdvertInterval => "zero_advert_interval",
            DecodeError::UnsupportedAuthType { .. } => "unsupported_auth_type",
            DecodeError::AuthTypeMismatch { .. } => "auth_type_mismatch",
            DecodeError::BadPassword => "bad_password",
            DecodeError::EndpointFamilyMismatch => "endpoint_family_mismatch",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::TooShort { len } => write!(f, "{len} bytes, shorter than a VRRP header"),
            DecodeError::BadVersion { version } => write!(f, "unknown VRRP version {version}"),
            DecodeError::BadType { kind } => write!(f, "unknown VRRP packet type {kind}"),
            DecodeError::V2OverIpv6 => f.write_str("VRRPv2 packet over IPv6"),
            DecodeError::NoAddresses => f.write_str("advertisement with no address"),
            DecodeError::Truncated { expected, actual } => {
                write!(
                    f,
                    "truncated: {actual} bytes, the header announces {expected}"
                )
            }
            DecodeError::LengthMismatch { expected, actual } => {
                write!(f, "{actual} bytes, the header announces {expected}")
            }
            DecodeError::ChecksumMismatch {
                received,
                computed,
                peer_seems_to_use,
            } => {
                write!(f, "bad checksum {received:#06x}, expected {computed:#06x}")?;
                match peer_seems_to_use {
                    Some(ChecksumMode::Keepalived) => f.write_str(
                        "; the peer includes the IPv4 pseudo-header (RFC 5798 as keepalived \
                         reads it), set the checksum mode to keepalived",
                    ),
                    Some(ChecksumMode::Rfc9568) => f.write_str(
                        "; the peer omits the IPv4 pseudo-header (RFC 9568, keepalived's \
                         v3_checksum_as_v2), set the checksum mode to rfc9568",
                    ),
                    None => Ok(()),
                }
            }
            DecodeError::ZeroAdvertInterval => f.write_str("advertisement interval of zero"),
            DecodeError::UnsupportedAuthType { auth_type } => {
                write!(f, "unsupported auth type {auth_type}")
            }
            DecodeError::AuthTypeMismatch { expected, received } => {
                write!(f, "auth type {received}, configured {expected}")
            }
            DecodeError::BadPassword => f.write_str("wrong authentication password"),
            DecodeError::EndpointFamilyMismatch => {
                f.write_str("source and destination of different address families")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// RFC 5798 §7.1: a VRRP packet whose TTL / hop limit is not 255 was routed
/// (or forged off-link) and MUST be discarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlNot255 {
    pub ttl: u8,
}

impl TtlNot255 {
    pub fn reason(&self) -> &'static str {
        "ttl_not_255"
    }
}

impl fmt::Display for TtlNot255 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TTL/hop limit {}, VRRP requires 255", self.ttl)
    }
}

impl std::error::Error for TtlNot255 {}

/// RFC 5798 §7.1: MUST verify that the IPv4 TTL / IPv6 hop limit is 255.
///
/// Pure, so the IO shell decides where it applies; keepalived lets unicast
/// peers configure a TTL range instead, for peers behind a router.
pub fn check_ttl(ttl_or_hop_limit: u8) -> Result<(), TtlNot255> {
    if ttl_or_hop_limit == REQUIRED_TTL {
        Ok(())
    } else {
        Err(TtlNot255 {
            ttl: ttl_or_hop_limit,
        })
    }
}

/// The IPv4 header in front of a packet read from a raw IPv4 socket
/// (RFC 791 §3.1). Options are skipped, not interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Header {
    /// Header length in bytes (IHL × 4), options included.
    pub header_len: usize,
    /// The DSCP/ECN byte (keepalived sends 0xc0, network control).
    pub tos: u8,
    /// Header plus payload, in bytes.
    pub total_len: u16,
    pub identification: u16,
    /// Flags (3 bits) and fragment offset (13 bits).
    pub flags_fragment: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub header_checksum: u16,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
}

impl Ipv4Header {
    /// An IPv4 header without options.
    pub const MIN_LEN: usize = 20;

    /// Parses the header of `packet` and returns it with the payload.
    ///
    /// The payload ends at Total Length, so link-layer padding of short
    /// frames is not mistaken for VRRP bytes. The header checksum is not
    /// verified: the kernel already dropped packets whose checksum failed.
    pub fn parse(packet: &[u8]) -> Result<(Ipv4Header, &[u8]), Ipv4HeaderError> {
        if packet.len() < Self::MIN_LEN {
            return Err(Ipv4HeaderError::TooShort { len: packet.len() });
        }
        let version = packet[0] >> 4;
        if version != 4 {
            return Err(Ipv4HeaderError::BadVersion { version });
        }
        let ihl = packet[0] & 0x0f;
        let header_len = usize::from(ihl) * 4;
        if ihl < 5 || header_len > packet.len() {
            return Err(Ipv4HeaderError::BadHeaderLength { ihl });
        }
        let total_len = u16::from_be_bytes([packet[2], packet[3]]);
        if usize::from(total_len) > packet.len() || usize::from(total_len) < header_len {
            return Err(Ipv4HeaderError::BadTotalLength {
                total_len,
                received: packet.len(),
            });
        }
        let header = Ipv4Header {
            header_len,
            tos: packet[1],
            total_len,
            identification: u16::from_be_bytes([packet[4], packet[5]]),
            flags_fragment: u16::from_be_bytes([packet[6], packet[7]]),
            ttl: packet[8],
            protocol: packet[9],
            header_checksum: u16::from_be_bytes([packet[10], packet[11]]),
            src: Ipv4Addr::new(packet[12], packet[13], packet[14], packet[15]),
            dst: Ipv4Addr::new(packet[16], packet[17], packet[18], packet[19]),
        };
        if header.protocol != PROTOCOL {
            return Err(Ipv4HeaderError::NotVrrp {
                protocol: header.protocol,
            });
        }
        Ok((header, &packet[header_len..usize::from(total_len)]))
    }

    /// Encodes a 20-byte header (no options, whatever `header_len` says)
    /// with a freshly computed header checksum.
    pub fn encode(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[0] = 0x45;
        out[1] = self.tos;
        out[2..4].copy_from_slice(&self.total_len.to_be_bytes());
        out[4..6].copy_from_slice(&self.identification.to_be_bytes());
        out[6..8].copy_from_slice(&self.flags_fragment.to_be_bytes());
        out[8] = self.ttl;
        out[9] = self.protocol;
        out[12..16].copy_from_slice(&self.src.octets());
        out[16..20].copy_from_slice(&self.dst.octets());
        let checksum = Checksum::new().add_bytes(&out).finish();
        out[10..12].copy_from_slice(&checksum.to_be_bytes());
        out
    }
}

/// Why the IPv4 header in front of a VRRP message was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4HeaderError {
    TooShort {
        len: usize,
    },
    BadVersion {
        version: u8,
    },
    /// IHL below 5, or pointing past the received bytes.
    BadHeaderLength {
        ihl: u8,
    },
    /// Total Length shorter than the header or longer than what arrived.
    BadTotalLength {
        total_len: u16,
        received: usize,
    },
    /// Not protocol 112.
    NotVrrp {
        protocol: u8,
    },
}

impl Ipv4HeaderError {
    /// A stable snake_case name for counters and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Ipv4HeaderError::TooShort { .. } => "ip_too_short",
            Ipv4HeaderError::BadVersion { .. } => "ip_bad_version",
            Ipv4HeaderError::BadHeaderLength { .. } => "ip_bad_header_length",
            Ipv4HeaderError::BadTotalLength { .. } => "ip_bad_total_length",
            Ipv4HeaderError::NotVrrp { .. } => "ip_not_vrrp",
        }
    }
}

impl fmt::Display for Ipv4HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ipv4HeaderError::TooShort { len } => {
                write!(f, "{len} bytes, shorter than an IPv4 header")
            }
            Ipv4HeaderError::BadVersion { version } => write!(f, "IP version {version}, not 4"),
            Ipv4HeaderError::BadHeaderLength { ihl } => write!(f, "bad IPv4 header length {ihl}"),
            Ipv4HeaderError::BadTotalLength {
                total_len,
                received,
            } => write!(
                f,
                "IPv4 total length {total_len}, received {received} bytes"
            ),
            Ipv4HeaderError::NotVrrp { protocol } => {
                write!(f, "IP protocol {protocol}, not VRRP (112)")
            }
        }
    }
}

impl std::error::Error for Ipv4HeaderError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    fn v3_advert() -> Advertisement {
        Advertisement {
            vrid: 51,
            priority: 150,
            addresses: vec![v4([10, 250, 0, 100])],
            fields: VersionFields::V3 {
                max_advert_interval: Centiseconds(100),
            },
        }
    }

    #[test]
    fn checksum_mismatch_names_the_other_convention() {
        let (src, dst) = (v4([10, 250, 0, 1]), IpAddr::V4(MULTICAST_V4));
        let bytes = v3_advert().encode(src, dst, ChecksumMode::Rfc9568).unwrap();
        let options = DecodeOptions::default(); // expects Keepalived
        let err = Advertisement::decode(&bytes, src, dst, &options).unwrap_err();
        assert_eq!(err.reason(), "bad_checksum_peer_omits_pseudo_header");

        let bytes = v3_advert()
            .encode(src, dst, ChecksumMode::Keepalived)
            .unwrap();
        let options = DecodeOptions {
            checksum_mode: ChecksumMode::Rfc9568,
            auth: None,
        };
        let err = Advertisement::decode(&bytes, src, dst, &options).unwrap_err();
        assert_eq!(err.reason(), "bad_checksum_peer_uses_pseudo_header");

        let mut corrupt = bytes.clone();
        corrupt[2] ^= 1;
        let err = Advertisement::decode(&corrupt, src, dst, &options).unwrap_err();
        assert_eq!(err.reason(), "bad_checksum");
    }

    #[test]
    fn v2_password_is_checked_and_truncated() {
        let (src, dst) = (v4([10, 0, 0, 1]), IpAddr::V4(MULTICAST_V4));
        let advert = Advertisement {
            vrid: 1,
            priority: 100,
            addresses: vec![v4([10, 0, 0, 100])],
            fields: VersionFields::V2 {
                advert_interval_secs: 1,
                auth: Auth::simple_password(b"0123456789"),
            },
        };
        let bytes = advert.encode(src, dst, ChecksumMode::default()).unwrap();
        assert_eq!(&bytes[12..20], b"01234567");
        let good = DecodeOptions {
            auth: Some(Auth::simple_password(b"01234567")),
            ..DecodeOptions::default()
        };
        assert_eq!(Advertisement::decode(&bytes, src, dst, &good), Ok(advert));
        let wrong = DecodeOptions {
            auth: Some(Auth::simple_password(b"nope")),
            ..DecodeOptions::default()
        };
        let err = Advertisement::decode(&bytes, src, dst, &wrong).unwrap_err();
        assert_eq!(err.reason(), "bad_password");
        let none = DecodeOptions {
            auth: Some(Auth::None),
            ..DecodeOptions::default()
        };
        let err = Advertisement::decode(&bytes, src, dst, &none).unwrap_err();
        assert_eq!(err.reason(), "auth_type_mismatch");
        assert_eq!(
            format!("{:?}", Auth::simple_password(b"x")),
            "SimplePassword(<redacted>)"
        );
    }

    #[test]
    fn length_checks_are_distinct() {
        let (src, dst) = (v4([10, 250, 0, 1]), IpAddr::V4(MULTICAST_V4));
        let options = DecodeOptions::default();
        let bytes = v3_advert().encode(src, dst, options.checksum_mode).unwrap();
        let err = Advertisement::decode(&bytes[..4], src, dst, &options).unwrap_err();
        assert_eq!(err.reason(), "too_short");
        let err = Advertisement::decode(&bytes[..11], src, dst, &options).unwrap_err();
        assert_eq!(err.reason(), "truncated");
        let mut long = bytes.clone();
        long.push(0);
        let err = Advertisement::decode(&long, src, dst, &options).unwrap_err();
        assert_eq!(err.reason(), "length_mismatch");
        let mut bad = bytes.clone();
        bad[0] = 0x41;
        let err = Advertisement::decode(&bad, src, dst, &options).unwrap_err();
        assert_eq!(err.reason(), "bad_version");
        bad[0] = 0x32;
        let err = Advertisement::decode(&bad, src, dst, &options).unwrap_err();
        assert_eq!(err.reason(), "bad_type");
    }

    #[test]
    fn v6_uses_the_pseudo_header_in_both_modes() {
        let src: IpAddr = "fe80::1".parse().unwrap();
        let dst = IpAddr::V6(MULTICAST_V6);
        let advert = Advertisement {
            vrid: 7,
            priority: 200,
            addresses: vec!["fe80::7".parse().unwrap(), "2001:db8::7".parse().unwrap()],
            fields: VersionFields::V3 {
                max_advert_interval: Centiseconds(10),
            },
        };
        let a = advert.encode(src, dst, ChecksumMode::Keepalived).unwrap();
        let b = advert.encode(src, dst, ChecksumMode::Rfc9568).unwrap();
        assert_eq!(a, b);
        let other_src: IpAddr = "fe80::2".parse().unwrap();
        let err = Advertisement::decode(&a, other_src, dst, &DecodeOptions::default());
        assert_eq!(err.unwrap_err().reason(), "bad_checksum");
        let v2 = Advertisement {
            fields: VersionFields::V2 {
                advert_interval_secs: 1,
                auth: Auth::None,
            },
            ..advert
        };
        assert_eq!(
            v2.encode(src, dst, ChecksumMode::Keepalived),
            Err(EncodeError::V2OverIpv6)
        );
    }

    #[test]
    fn ttl_check() {
        assert_eq!(check_ttl(255), Ok(()));
        assert_eq!(check_ttl(254).unwrap_err().reason(), "ttl_not_255");
    }

    #[test]
    fn ipv4_header_errors() {
        let header = Ipv4Header {
            header_len: 20,
            tos: 0xc0,
            total_len: 32,
            identification: 2,
            flags_fragment: 0,
            ttl: 255,
            protocol: PROTOCOL,
            header_checksum: 0,
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: MULTICAST_V4,
        };
        let mut packet = header.encode().to_vec();
        packet.extend_from_slice(&[0; 12]);
        let (parsed, payload) = Ipv4Header::parse(&packet).unwrap();
        assert_eq!(payload.len(), 12);
        assert_eq!(parsed.ttl, 255);
        // Link-layer padding beyond Total Length is not payload.
        packet.extend_from_slice(&[0; 6]);
        assert_eq!(Ipv4Header::parse(&packet).unwrap().1.len(), 12);

        assert_eq!(
            Ipv4Header::parse(&packet[..10]).unwrap_err().reason(),
            "ip_too_short"
        );
        let mut bad = packet.clone();
        bad[0] = 0x65;
        assert_eq!(
            Ipv4Header::parse(&bad).unwrap_err().reason(),
            "ip_bad_version"
        );
        bad[0] = 0x44;
        assert_eq!(
            Ipv4Header::parse(&bad).unwrap_err().reason(),
            "ip_bad_header_length"
        );
        let mut bad = packet.clone();
        bad[9] = 17;
        assert_eq!(Ipv4Header::parse(&bad).unwrap_err().reason(), "ip_not_vrrp");
        assert_eq!(
            Ipv4Header::parse(&packet[..30]).unwrap_err().reason(),
            "ip_bad_total_length"
        );
    }
}
