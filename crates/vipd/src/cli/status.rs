//! `vipd status` and `vipd reload`: the running daemon, through its
//! control socket.

use std::fmt::Write as _;
use std::process::ExitCode;

use super::{SocketArgs, StatusArgs};
use crate::api::client;
use crate::api::schema::{ReloadOutcome, StatusDocument};
use crate::health::record::{LastCheck, unix_now};

pub fn status(args: &StatusArgs) -> ExitCode {
    let response = match client::request(&args.socket.socket, "GET", "/v1/status") {
        Ok(response) => response,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if response.status != 200 {
        eprintln!(
            "error: the daemon answered {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
        return ExitCode::FAILURE;
    }
    if args.json {
        println!("{}", String::from_utf8_lossy(&response.body));
        return ExitCode::SUCCESS;
    }
    match serde_json::from_slice::<StatusDocument>(&response.body) {
        Ok(document) => {
            print!("{}", render(&document, unix_now()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "error: cannot read the daemon's status document ({e}); is it a different vipd version? `vipd status --json` prints it raw"
            );
            ExitCode::FAILURE
        }
    }
}

pub fn reload(args: &SocketArgs) -> ExitCode {
    let response = match client::request(&args.socket, "POST", "/v1/reload") {
        Ok(response) => response,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome: ReloadOutcome = match serde_json::from_slice(&response.body) {
        Ok(outcome) => outcome,
        Err(_) => {
            eprintln!(
                "error: the daemon answered {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body).trim()
            );
            return ExitCode::FAILURE;
        }
    };
    if outcome.ok {
        if outcome.changes.is_empty() {
            println!("reloaded: nothing changed");
        } else {
            println!("reloaded:");
            for change in &outcome.changes {
                println!("  {change}");
            }
        }
        ExitCode::SUCCESS
    } else {
        eprintln!("reload refused; the running configuration stays:");
        for e in &outcome.errors {
            eprintln!("  {e}");
        }
        ExitCode::FAILURE
    }
}

/// `1.2s`, `3m04s`, `2h05m`, `3d04h`.
pub(super) fn span(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 60.0 {
        return format!("{s:.1}s");
    }
    let whole = s as u64;
    match whole {
        ..3600 => format!("{}m{:02}s", whole / 60, whole % 60),
        3600..86400 => format!("{}h{:02}m", whole / 3600, (whole % 3600) / 60),
        _ => format!("{}d{:02}h", whole / 86400, (whole % 86400) / 3600),
    }
}

/// The UTC time of day of a Unix timestamp.
pub(super) fn clock(at: f64) -> String {
    let secs = at.max(0.0) as u64 % 86400;
    format!(
        "{:02}:{:02}:{:02}",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

fn last_check(check: &Option<LastCheck>, now: f64) -> String {
    match check {
        None => "not yet".to_owned(),
        Some(check) => format!("{} ({} ago)", check.detail, span(now - check.at)),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n}B"),
        _ => format!("{value:.1}{}", UNITS[unit]),
    }
}

/// The status as text, for a person at a terminal.
pub fn render(doc: &StatusDocument, now: f64) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "vipd {} · cluster {} · node {} ({}) · pid {} · up {}",
        doc.vipd_version,
        doc.cluster,
        doc.node,
        doc.roles.join(", "),
        doc.pid,
        span(now - doc.started_at)
    );
    let _ = write!(
        out,
        "config {} · generation {} · loaded {} ago",
        doc.config.file,
        doc.config.generation,
        span(now - doc.config.loaded_at)
    );
    match &doc.last_reload {
        None => out.push('\n'),
        Some(r) if r.ok => {
            let _ = writeln!(
                out,
                " · last reload {} ago ({}): ok, {} change(s)",
                span(now - r.at),
                r.trigger,
                r.changes.len()
            );
        }
        Some(r) => {
            let _ = writeln!(
                out,
                " · last reload {} ago ({}): REFUSED, the running configuration stays:",
                span(now - r.at),
                r.trigger
            );
            for e in &r.errors {
                let _ = writeln!(out, "    {e}");
            }
        }
    }
    if let Some(v) = &doc.vrrp {
        let _ = writeln!(
            out,
            "\nVRRP  VRID {} on {} · VIP {} · v{}",
            v.vrid, v.interface, v.vip, v.version
        );
        let vip = if v.vip_on_interface {
            "VIP on this node"
        } else {
            "VIP not on this node"
        };
        let fault = v
            .fault
            .as_ref()
            .map(|f| format!(" · fault: {f}"))
            .unwrap_or_default();
        let _ = writeln!(out, "  state        {} ({vip}){fault}", v.state);
        let why = if v.priority_reasons.is_empty() {
            String::new()
        } else {
            format!(": {}", v.priority_reasons.join(", "))
        };
        let _ = writeln!(
            out,
            "  priority     {} configured, {} effective{why}",
            v.configured_priority, v.effective_priority
        );
        let master = v
            .master
            .map_or_else(|| "none heard".to_owned(), |m| m.to_string());
        let _ = writeln!(out, "  master       {master}");
        let dropped = if v.dropped.is_empty() {
            String::new()
        } else {
            let reasons: Vec<String> = v.dropped.iter().map(|(r, n)| format!("{r} {n}")).collect();
            format!(" · dropped: {}", reasons.join(", "))
        };
        let _ = writeln!(
            out,
            "  adverts      {} sent, {} received{dropped}",
            v.adverts_sent, v.adverts_received
        );
        for (i, t) in v.trackers.iter().enumerate() {
            let label = if i == 0 { "trackers" } else { "" };
            let _ = writeln!(
                out,
                "  {label:<12} {} {} (weight {}) · {}",
                t.name,
                if t.healthy { "up" } else { "DOWN" },
                t.weight,
                last_check(&t.last_check, now)
            );
        }
        for (i, t) in v.transitions.iter().rev().take(5).enumerate() {
            let label = if i == 0 { "transitions" } else { "" };
            let _ = writeln!(
                out,
                "  {label:<12} {} UTC  {} -> {}  {}",
                clock(t.at),
                t.from,
                t.to,
                t.detail
            );
        }
    }
    for f in &doc.frontends {
        let _ = writeln!(
            out,
            "\nPROXY {} {} · {} · {} active, {} accepted, {} refused, {} retries",
            f.name, f.listen, f.balance, f.active, f.accepted, f.refused, f.retries
        );
        let _ = writeln!(
            out,
            "  {:<14} {:<22} {:<6} {:>6} {:>8} {:>6} {:>19}  LAST CHECK",
            "BACKEND", "ADDRESS", "HEALTH", "ACTIVE", "TOTAL", "FAILS", "TO BACKEND/CLIENT"
        );
        for b in &f.backends {
            let name = if b.local {
                format!("{} (local)", b.name)
            } else {
                b.name.clone()
            };
            let _ = writeln!(
                out,
                "  {:<14} {:<22} {:<6} {:>6} {:>8} {:>6} {:>19}  {}",
                name,
                b.address,
                if b.healthy { "up" } else { "DOWN" },
                b.active,
                b.total,
                b.connect_failures,
                format!("{}/{}", bytes(b.bytes_to_backend), bytes(b.bytes_to_client)),
                last_check(&b.last_check, now)
            );
        }
    }
    if let Some(d) = &doc.dnat {
        let loaded = d.targets.iter().filter(|t| t.loaded).count();
        let _ = writeln!(
            out,
            "\nDNAT  {} -> {loaded} of {} targets loaded · {} change(s) · {} unanswered flow(s) forgotten{}",
            d.destination,
            d.targets.len(),
            d.changes,
            d.forgotten_flows,
            if d.fail_open {
                " · FAIL-OPEN: no target healthy, the last set is kept"
            } else {
                ""
            }
        );
        if let Some(e) = &d.last_error {
            let _ = writeln!(out, "  last nft error (the old table stays): {e}");
        }
        for t in &d.targets {
            let _ = writeln!(
                out,
                "  {:<14} {:<22} {:<6} {:<6} observed down {}",
                t.node,
                t.address,
                if t.healthy { "up" } else { "DOWN" },
                if t.loaded { "loaded" } else { "out" },
                t.observed_down
            );
        }
    }
    if let Some(m) = &doc.follow {
        let _ = writeln!(out, "\nMESH  VIP {} on {}", m.vip, m.interface);
        let route = match (m.route.as_str(), &m.holder) {
            ("holder", Some(holder)) => {
                let address = m
                    .holder_address
                    .map(|a| format!(" {a}"))
                    .unwrap_or_default();
                let priority = m
                    .holder_priority
                    .map(|p| format!(", priority {p}"))
                    .unwrap_or_default();
                format!(
                    "to {holder}{address}{priority} · peer {}",
                    m.peer.as_deref().unwrap_or("?")
                )
            }
            ("local", _) => "local: this node is master, the VIP is on no peer".to_owned(),
            ("nowhere", _) => {
                "NOWHERE: no master trusted, the VIP is unreachable from this node".to_owned()
            }
            (other, _) => other.to_owned(),
        };
        let _ = writeln!(out, "  route        {route}");
        let applied = match (&m.error, m.applied) {
            (Some(e), _) => format!("NOT APPLIED (retrying every second): {e}"),
            (None, false) => "not applied yet (waiting to hear the master)".to_owned(),
            (None, true) => "applied on the device".to_owned(),
        };
        let took = m
            .last_change_ms
            .map(|ms| format!(" · last change took {ms:.1}ms"))
            .unwrap_or_default();
        let repairs = match m.repairs {
            0 => String::new(),
            n => format!(" · put back {n} time(s) after a change outside vipd"),
        };
        let _ = writeln!(out, "  device       {applied}{took}{repairs}");
        let _ = writeln!(
            out,
            "  since        {} UTC ({} ago): {} · {} change(s)",
            clock(m.since),
            span(now - m.since),
            m.reason,
            m.changes
        );
        let dropped = if m.dropped.is_empty() {
            String::new()
        } else {
            let reasons: Vec<String> = m.dropped.iter().map(|(r, n)| format!("{r} {n}")).collect();
            format!(" · dropped: {}", reasons.join(", "))
        };
        let _ = writeln!(
            out,
            "  adverts      {} received from {}{dropped}",
            m.adverts_received,
            m.holders.join(", ")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_naturally() {
        assert_eq!(span(1.25), "1.2s");
        assert_eq!(span(184.0), "3m04s");
        assert_eq!(span(7500.0), "2h05m");
        assert_eq!(span(3.0 * 86400.0 + 4.0 * 3600.0), "3d04h");
        assert_eq!(clock(86400.0 * 20000.0 + 3723.0), "01:02:03");
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1536), "1.5KiB");
    }

    #[test]
    fn the_mesh_route_is_shown() {
        use crate::api::schema::{ConfigStatus, FollowStatus};
        let now = 1_800_000_000.0;
        let mut doc = StatusDocument {
            schema: 1,
            vipd_version: "0.1.0".into(),
            cluster: "c".into(),
            node: "worker-1".into(),
            roles: vec!["worker".into()],
            pid: 7,
            started_at: now - 100.0,
            config: ConfigStatus {
                file: "c.toml".into(),
                loaded_at: now - 100.0,
                generation: 1,
            },
            last_reload: None,
            vrrp: None,
            frontends: Vec::new(),
            dnat: None,
            follow: Some(FollowStatus {
                interface: "wg7".into(),
                vip: "198.19.7.100/32".into(),
                holders: vec!["lb-a".into(), "lb-b".into()],
                route: "holder".into(),
                holder: Some("lb-b".into()),
                holder_address: Some("198.19.7.2".parse().unwrap()),
                peer: Some("KEY-B".into()),
                holder_priority: Some(100),
                since: now - 184.0,
                reason: "former_master_overdue".into(),
                changes: 2,
                applied: true,
                repairs: 1,
                last_change_ms: Some(11.24),
                adverts_received: 300,
                dropped: [("not_a_holder".to_owned(), 4)].into_iter().collect(),
                ..FollowStatus::default()
            }),
        };
        let text = render(&doc, now);
        for expected in [
            "MESH  VIP 198.19.7.100/32 on wg7",
            "route        to lb-b 198.19.7.2, priority 100 · peer KEY-B",
            "applied on the device · last change took 11.2ms · put back 1 time(s)",
            "(3m04s ago): former_master_overdue · 2 change(s)",
            "300 received from lb-a, lb-b · dropped: not_a_holder 4",
        ] {
            assert!(text.contains(expected), "{expected:?} not in:\n{text}");
        }
        let follow = doc.follow.as_mut().unwrap();
        follow.route = "nowhere".into();
        follow.holder = None;
        follow.applied = false;
        follow.error = Some("wg set wg7: Operation not permitted".into());
        let text = render(&doc, now);
        assert!(text.contains("NOWHERE: no master trusted"), "{text}");
        assert!(
            text.contains("NOT APPLIED (retrying every second): wg set wg7"),
            "{text}"
        );
    }
}
