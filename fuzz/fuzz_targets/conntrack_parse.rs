//! The DNAT datapath reads ctnetlink datagrams (dumps, acks, new, update and
//! destroy events) from the kernel: `conntrack::parse` must split any bytes
//! into messages without a panic, and what it reads as a flow must go
//! through the passive watch's filter and make a delete request.
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use vipd::nftables::conntrack::{self, Message};

fuzz_target!(|data: &[u8]| {
    let messages = conntrack::parse(data);
    let flows: Vec<_> = messages
        .iter()
        .filter_map(|m| match m {
            Message::Flow { flow, .. } | Message::Gone(flow) => Some(*flow),
            _ => None,
        })
        .collect();
    for flow in &flows {
        let request = conntrack::delete_request(flow, 1);
        let _ = conntrack::parse(&request);
        let _ = conntrack::unanswered(&flows, flow.destination, flow.replier);
    }
    let anywhere: SocketAddr = "198.18.0.100:6443".parse().expect("an address");
    let _ = conntrack::unanswered(&flows, anywhere, anywhere);
});
