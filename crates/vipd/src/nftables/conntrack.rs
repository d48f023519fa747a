//! Just enough ctnetlink (netlink family `NETLINK_NETFILTER`, subsystem
//! `CTNETLINK`) for the DNAT datapath: list the flows the kernel rewrote,
//! delete the ones a target never answered, and hear new flows and their
//! first reply as events.
//!
//! Why: conntrack pins a flow to the target its first SYN was rewritten
//! to. When a target dies, the SYNs already sent to it stay pinned: every
//! retransmission follows the entry to the dead target until the client
//! gives up, whatever the rules say by then. Deleting the unanswered
//! entries when a target leaves the set lets the client's next
//! retransmission be rewritten afresh to a healthy target (IPVS's
//! `expire_nodest_conn` does the same for its own table).
//!
//! The wire format (include/uapi/linux/netfilter/nfnetlink*.h): a netlink
//! header, a 4-byte `nfgenmsg` (family, version 0, resource id), then
//! attributes, nested for the tuples. Numbers in attributes are big endian
//! (ports, status); the netlink header is host order.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use netlink_sys::{Socket, SocketAddr as NetlinkAddr, constants::NETLINK_NETFILTER};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLA_TYPE_MASK: u16 = 0x3fff;
const NLA_F_NESTED: u16 = 0x8000;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;

/// `IPS_SEEN_REPLY`: a packet went the reply way.
const IPS_SEEN_REPLY: u32 = 1 << 1;
/// TCP conntrack states before any answer: NONE, SYN_SENT, SYN_SENT2.
const TCP_UNANSWERED_STATES: [u8; 3] = [0, 1, 9];

/// The multicast groups of new flows and of changes to flows.
pub const GROUP_NEW: u32 = 1;
pub const GROUP_UPDATE: u32 = 2;

const IPPROTO_TCP: u8 = 6;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// One TCP conntrack entry, as much of it as vipd reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    /// The client.
    pub source: SocketAddr,
    /// What the client aimed at (VIP:port for a rewritten flow).
    pub destination: SocketAddr,
    /// Where replies come from: the target the flow was rewritten to.
    pub replier: SocketAddr,
    /// Whether any packet came back.
    pub answered: bool,
}

/// What a message from the kernel said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A flow, from a dump or an event (`new` for a creation event).
    Flow { flow: Flow, new: bool },
    /// A flow that went away (a destroy event).
    Gone(Flow),
    /// A flow of another protocol, or one this codec cannot read.
    Other,
    /// The end of a dump.
    Done,
    /// An acknowledgement (0) or an error (a negative errno).
    Ack(i32),
}

fn push_header(buf: &mut Vec<u8>, kind: u16, flags: u16, seq: u32, family: u8) {
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched in `finish`
    buf.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | kind).to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    buf.extend_from_slice(&[family, 0, 0, 0]);
}

fn finish(mut buf: Vec<u8>) -> Vec<u8> {
    let len = buf.len() as u32;
    buf[..4].copy_from_slice(&len.to_ne_bytes());
    buf
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn push_nested(buf: &mut Vec<u8>, kind: u16, inner: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    inner(buf);
    let len = (buf.len() - start) as u16;
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    buf[start + 2..start + 4].copy_from_slice(&(kind | NLA_F_NESTED).to_ne_bytes());
}

/// A request for every conntrack entry of every family.
pub fn dump_request(seq: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(20);
    push_header(
        &mut buf,
        IPCTNL_MSG_CT_GET,
        NLM_F_REQUEST | NLM_F_DUMP,
        seq,
        0,
    );
    finish(buf)
}

/// A request to delete the entry of `flow` (found by its original
/// tuple), acknowledged.
pub fn delete_request(flow: &Flow, seq: u32) -> Vec<u8> {
    let family = if flow.source.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    };
    let mut buf = Vec::with_capacity(80);
    push_header(
        &mut buf,
        IPCTNL_MSG_CT_DELETE,
        NLM_F_REQUEST | NLM_F_ACK,
        seq,
        family,
    );
    push_tuple(&mut buf, CTA_TUPLE_ORIG, flow.source, flow.destination);
    finish(buf)
}

/// A TCP tuple attribute (`CTA_TUPLE_ORIG` or `CTA_TUPLE_REPLY`).
fn push_tuple(buf: &mut Vec<u8>, kind: u16, source: SocketAddr, destination: SocketAddr) {
    push_nested(buf, kind, |buf| {
        push_nested(buf, CTA_TUPLE_IP, |buf| {
            match (source.ip(), destination.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    push_attr(buf, CTA_IP_V4_SRC, &s.octets());
                    push_attr(buf, CTA_IP_V4_DST, &d.octets());
                }
                (s, d) => {
                    push_attr(buf, CTA_IP_V6_SRC, &v6(s).octets());
                    push_attr(buf, CTA_IP_V6_DST, &v6(d).octets());
                }
            }
        });
        push_nested(buf, CTA_TUPLE_PROTO, |buf| {
            push_attr(buf, CTA_PROTO_NUM, &[IPPROTO_TCP]);
            push_attr(buf, CTA_PROTO_SRC_PORT, &source.port().to_be_bytes());
            push_attr(buf, CTA_PROTO_DST_PORT, &destination.port().to_be_bytes());
        });
    });
}

fn v6(address: IpAddr) -> Ipv6Addr {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Attributes of one level: (type without flags, payload). Stops at the
/// first malformed one.
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some((kind, payload))
    })
}

fn find(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(buf).find(|(k, _)| *k == kind).map(|(_, p)| p)
}

fn be16(payload: &[u8]) -> Option<u16> {
    Some(u16::from_be_bytes(payload.get(..2)?.try_into().ok()?))
}

fn ip(payload: &[u8]) -> Option<IpAddr> {
    match payload.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(payload).ok()?,
        ))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(payload).ok()?,
        ))),
        _ => None,
    }
}

/// (source, destination) of a TCP tuple; None for another protocol.
fn tuple(buf: &[u8]) -> Option<(SocketAddr, SocketAddr)> {
    let ips = find(buf, CTA_TUPLE_IP)?;
    let proto = find(buf, CTA_TUPLE_PROTO)?;
    if find(proto, CTA_PROTO_NUM)?.first() != Some(&IPPROTO_TCP) {
        return None;
    }
    let (src, dst) = match (find(ips, CTA_IP_V4_SRC), find(ips, CTA_IP_V4_DST)) {
        (Some(s), Some(d)) => (ip(s)?, ip(d)?),
        _ => (
            ip(find(ips, CTA_IP_V6_SRC)?)?,
            ip(find(ips, CTA_IP_V6_DST)?)?,
        ),
    };
    let sport = be16(find(proto, CTA_PROTO_SRC_PORT)?)?;
    let dport = be16(find(proto, CTA_PROTO_DST_PORT)?)?;
    Some((SocketAddr::new(src, sport), SocketAddr::new(dst, dport)))
}

fn flow(body: &[u8]) -> Option<Flow> {
    let (source, destination) = tuple(find(body, CTA_TUPLE_ORIG)?)?;
    let (replier, _) = tuple(find(body, CTA_TUPLE_REPLY)?)?;
    let seen_reply = find(body, CTA_STATUS)
        .and_then(|p| Some(u32::from_be_bytes(p.get(..4)?.try_into().ok()?)))
        .is_some_and(|status| status & IPS_SEEN_REPLY != 0);
    let tcp_state = find(body, CTA_PROTOINFO)
        .and_then(|p| find(p, CTA_PROTOINFO_TCP))
        .and_then(|p| find(p, CTA_PROTOINFO_TCP_STATE))
        .and_then(|p| p.first().copied());
    let answered =
        seen_reply || tcp_state.is_some_and(|state| !TCP_UNANSWERED_STATES.contains(&state));
    Some(Flow {
        source,
        destination,
        replier,
        answered,
    })
}

/// Splits a datagram from the kernel into messages. A truncated tail ends
/// the list; a message this codec cannot read is [`Message::Other`].
pub fn parse(mut buf: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            break;
        }
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let flags = u16::from_ne_bytes([buf[6], buf[7]]);
        let payload = &buf[16..len];
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        let message = match kind {
            NLMSG_DONE => Message::Done,
            NLMSG_ERROR => match payload.get(..4) {
                Some(code) => Message::Ack(i32::from_ne_bytes(code.try_into().unwrap_or([0; 4]))),
                None => Message::Other,
            },
            _ if kind >> 8 == NFNL_SUBSYS_CTNETLINK && payload.len() >= 4 => {
                let body = &payload[4..];
                match (kind & 0xff, flow(body)) {
                    (IPCTNL_MSG_CT_NEW, Some(flow)) => Message::Flow {
                        flow,
                        new: flags & (NLM_F_CREATE | NLM_F_EXCL) != 0,
                    },
                    (IPCTNL_MSG_CT_DELETE, Some(flow)) => Message::Gone(flow),
                    _ => Message::Other,
                }
            }
            _ => Message::Other,
        };
        out.push(message);
    }
    out
}

fn kernel() -> NetlinkAddr {
    NetlinkAddr::new(0, 0)
}

fn socket() -> io::Result<Socket> {
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&kernel())?;
    Ok(socket)
}

/// Every TCP entry of this namespace's conntrack table (blocking).
pub fn list() -> io::Result<Vec<Flow>> {
    let socket = socket()?;
    socket.send(&dump_request(1), 0)?;
    let mut flows = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    // Bounded: the kernel ends every dump with DONE or an error.
    loop {
        let n = socket.recv(&mut &mut buf[..], 0)?;
        for message in parse(&buf[..n]) {
            match message {
                Message::Flow { flow, .. } => flows.push(flow),
                Message::Done => return Ok(flows),
                Message::Ack(code) if code < 0 => return Err(io::Error::from_raw_os_error(-code)),
                _ => {}
            }
        }
        if n == 0 {
            return Ok(flows);
        }
    }
}

/// Deletes the entries of `flows` (blocking); returns how many the kernel
/// removed. One that went away meanwhile is not an error.
pub fn delete(flows: &[Flow]) -> io::Result<usize> {
    if flows.is_empty() {
        return Ok(0);
    }
    let socket = socket()?;
    let mut buf = vec![0u8; 8 * 1024];
    let mut deleted = 0;
    for (seq, flow) in (1u32..).zip(flows) {
        socket.send(&delete_request(flow, seq), 0)?;
        let n = socket.recv(&mut &mut buf[..], 0)?;
        match parse(&buf[..n]).first() {
            Some(Message::Ack(0)) => deleted += 1,
            Some(Message::Ack(code)) if *code == -(nix::errno::Errno::ENOENT as i32) => {}
            Some(Message::Ack(code)) => return Err(io::Error::from_raw_os_error(-code)),
            _ => {}
        }
    }
    Ok(deleted)
}

/// The flows rewritten from `destination` to `target` that `target` never
/// answered.
pub fn unanswered(flows: &[Flow], destination: SocketAddr, target: SocketAddr) -> Vec<Flow> {
    flows
        .iter()
        .filter(|f| !f.answered && f.destination == destination && f.replier == target)
        .copied()
        .collect()
}

/// Deletes the entries of the flows `target` never answered (blocking), so
/// their retransmitted SYNs are rewritten again. Returns how many.
pub fn forget_unanswered(destination: SocketAddr, target: SocketAddr) -> io::Result<usize> {
    delete(&unanswered(&list()?, destination, target))
}

/// A socket on the new-flow and flow-change events of this namespace.
pub fn event_socket() -> io::Result<netlink_sys::TokioSocket> {
    use netlink_sys::AsyncSocket as _;
    let mut socket = netlink_sys::TokioSocket::new(NETLINK_NETFILTER)?;
    socket.socket_mut().bind_auto()?;
    // Room for bursts; an overrun shows as ENOBUFS, which the reader
    // treats as "events were lost".
    let _ = socket.socket_ref().set_rx_buf_sz(4 * 1024 * 1024);
    socket.socket_ref().add_membership(GROUP_NEW)?;
    socket.socket_ref().add_membership(GROUP_UPDATE)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(answered: bool, replier: &str) -> Flow {
        Flow {
            source: "198.18.0.21:40000".parse().unwrap(),
            destination: "198.18.0.100:6443".parse().unwrap(),
            replier: replier.parse().unwrap(),
            answered,
        }
    }

    /// A kernel-style message: the request encoder's tuple, plus a reply
    /// tuple, a status and a TCP state.
    fn kernel_message(f: &Flow, kind: u16, flags: u16, status: u32, state: u8) -> Vec<u8> {
        let mut buf = Vec::new();
        push_header(&mut buf, kind, flags, 0, AF_INET);
        push_tuple(&mut buf, CTA_TUPLE_ORIG, f.source, f.destination);
        push_tuple(
            &mut buf,
            CTA_TUPLE_REPLY,
            f.replier,
            "198.18.0.1:40000".parse().unwrap(),
        );
        push_attr(&mut buf, CTA_STATUS, &status.to_be_bytes());
        push_nested(&mut buf, CTA_PROTOINFO, |buf| {
            push_nested(buf, CTA_PROTOINFO_TCP, |buf| {
                push_attr(buf, CTA_PROTOINFO_TCP_STATE, &[state]);
            });
        });
        finish(buf)
    }

    #[test]
    fn a_dumped_flow_reads_back_with_its_replier_and_answer() {
        let syn_sent = flow(false, "198.18.0.11:16443");
        let mut datagram = kernel_message(&syn_sent, IPCTNL_MSG_CT_NEW, 0, 0, 1);
        let established = flow(true, "198.18.0.12:16443");
        datagram.extend(kernel_message(
            &established,
            IPCTNL_MSG_CT_NEW,
            0,
            IPS_SEEN_REPLY,
            3,
        ));
        let mut done = Vec::new();
        done.extend_from_slice(&16u32.to_ne_bytes());
        done.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        done.extend_from_slice(&[0; 10]);
        datagram.extend(done);
        assert_eq!(
            parse(&datagram),
            [
                Message::Flow {
                    flow: syn_sent,
                    new: false
                },
                Message::Flow {
                    flow: established,
                    new: false
                },
                Message::Done,
            ]
        );
    }

    #[test]
    fn events_say_new_or_gone_and_the_state_alone_counts_as_an_answer() {
        let f = flow(false, "[2001:db8::11]:16443");
        let f = Flow {
            source: "[2001:db8::21]:40000".parse().unwrap(),
            destination: "[2001:db8::100]:6443".parse().unwrap(),
            ..f
        };
        let new = kernel_message(&f, IPCTNL_MSG_CT_NEW, NLM_F_CREATE | NLM_F_EXCL, 0, 1);
        assert_eq!(parse(&new), [Message::Flow { flow: f, new: true }]);
        // SYN_RECV without the status bit (an event that carried no status).
        let answered = kernel_message(&f, IPCTNL_MSG_CT_NEW, 0, 0, 2);
        let expected = Flow {
            answered: true,
            ..f
        };
        assert_eq!(
            parse(&answered),
            [Message::Flow {
                flow: expected,
                new: false
            }]
        );
        let gone = kernel_message(&f, IPCTNL_MSG_CT_DELETE, 0, 0, 1);
        assert_eq!(parse(&gone), [Message::Gone(f)]);
    }

    #[test]
    fn truncated_and_foreign_input_is_dropped_not_trusted() {
        let f = flow(false, "198.18.0.11:16443");
        let whole = kernel_message(&f, IPCTNL_MSG_CT_NEW, 0, 0, 1);
        for cut in 0..whole.len() {
            // Never a panic; a cut message is not read as a flow.
            let parsed = parse(&whole[..cut]);
            assert!(
                parsed.iter().all(|m| !matches!(m, Message::Flow { .. })),
                "cut at {cut}"
            );
        }
        let mut udp = whole.clone();
        let at = udp
            .windows(5)
            .position(|w| w == [5, 0, 1, 0, IPPROTO_TCP])
            .unwrap();
        udp[at + 4] = 17;
        assert_eq!(parse(&udp), [Message::Other]);
    }

    #[test]
    fn the_delete_request_carries_the_original_tuple() {
        let f = flow(false, "198.18.0.11:16443");
        let request = delete_request(&f, 7);
        assert_eq!(
            request.len(),
            u32::from_ne_bytes(request[..4].try_into().unwrap()) as usize
        );
        assert_eq!(u16::from_ne_bytes([request[4], request[5]]), (1 << 8) | 2);
        // The kernel's own encoding of the same tuple parses to the same
        // source and destination.
        let body = &request[20..];
        assert_eq!(
            tuple(find(body, CTA_TUPLE_ORIG).unwrap()),
            Some((f.source, f.destination))
        );
    }

    #[test]
    fn only_the_unanswered_flows_of_the_target_are_picked() {
        let flows = [
            flow(false, "198.18.0.11:16443"),
            flow(true, "198.18.0.11:16443"),
            flow(false, "198.18.0.12:16443"),
        ];
        let picked = unanswered(
            &flows,
            "198.18.0.100:6443".parse().unwrap(),
            "198.18.0.11:16443".parse().unwrap(),
        );
        assert_eq!(picked, [flows[0]]);
    }
}
