//! Prometheus metrics, read at scrape time from the same live state as
//! `vipd status` (a [`Collector`] over [`State`]): what the status shows
//! and what Prometheus stores cannot disagree. Names are documented in
//! docs/operations.md ("Metrics"); deploy/grafana/vipd.json charts them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::State;
use super::schema::FollowStatus;

type Labels = Vec<(&'static str, String)>;

/// The registry a daemon serves: everything comes from `state`.
pub fn registry(state: Arc<State>) -> Registry {
    let mut registry = Registry::with_prefix("vipd");
    registry.register_collector(Box::new(StateCollector(state)));
    registry
}

/// The text exposition of `registry`.
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String does not fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

#[derive(Debug)]
struct StateCollector(Arc<State>);

/// One metric family: a descriptor, then a value per label set.
struct Family<'a, 'e> {
    encoder: &'a mut DescriptorEncoder<'e>,
}

impl Family<'_, '_> {
    fn gauges(&mut self, name: &str, help: &str, values: &[(Labels, i64)]) -> std::fmt::Result {
        let mut metric = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, value) in values {
            ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn float_gauges(
        &mut self,
        name: &str,
        help: &str,
        values: &[(Labels, f64)],
    ) -> std::fmt::Result {
        let mut metric = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (labels, value) in values {
            ConstGauge::new(*value).encode(metric.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn counters(&mut self, name: &str, help: &str, values: &[(Labels, u64)]) -> std::fmt::Result {
        let mut metric = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, value) in values {
            ConstCounter::new(*value).encode(metric.encode_family(labels)?)?;
        }
        Ok(())
    }
}

fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

const STATES: [&str; 4] = ["initialize", "backup", "master", "fault"];

/// The routes of the VIP on the mesh besides a holder's peer.
const PEERLESS_ROUTES: [&str; 2] = ["local", "nowhere"];

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let state = &self.0;
        let mut f = Family {
            encoder: &mut encoder,
        };
        let node: Labels = vec![
            ("cluster", state.cluster.clone()),
            ("node", state.node.clone()),
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
        ];
        f.gauges(
            "build_info",
            "Always 1; the labels say what runs where.",
            &[(node, 1)],
        )?;
        f.counters(
            "reloads",
            "Configuration reloads, by result.",
            &[
                (vec![("result", "ok".into())], load(&state.reloads_ok)),
                (
                    vec![("result", "failed".into())],
                    load(&state.reloads_failed),
                ),
            ],
        )?;
        let document_generation = state.document_generation();
        f.gauges(
            "config_generation",
            "1 at start, +1 per successful reload.",
            &[(vec![], document_generation as i64)],
        )?;

        if let Some(vrrp) = state.vrrp() {
            let status = vrrp.snapshot();
            let vrid = || vec![("vrid", status.vrid.to_string())];
            let states: Vec<(Labels, i64)> = STATES
                .iter()
                .map(|s| {
                    let mut labels = vrid();
                    labels.push(("state", (*s).to_owned()));
                    (labels, i64::from(status.state == *s))
                })
                .collect();
            f.gauges(
                "vrrp_state",
                "1 for the state the VRRP instance is in.",
                &states,
            )?;
            f.gauges(
                "vrrp_priority",
                "The configured priority and the effective one (moved by trackers).",
                &[
                    (
                        [vrid(), vec![("kind", "configured".into())]].concat(),
                        i64::from(status.configured_priority),
                    ),
                    (
                        [vrid(), vec![("kind", "effective".into())]].concat(),
                        i64::from(status.effective_priority),
                    ),
                ],
            )?;
            f.gauges(
                "vrrp_vip_present",
                "1 while the VIP is on this node's interface.",
                &[(vrid(), i64::from(status.vip_on_interface))],
            )?;
            let transitions: Vec<(Labels, u64)> = status
                .transitions_total
                .iter()
                .map(|(key, count)| {
                    let (to, reason) = key.split_once(':').unwrap_or((key, ""));
                    (
                        [
                            vrid(),
                            vec![("to", to.to_owned()), ("reason", reason.to_owned())],
                        ]
                        .concat(),
                        *count,
                    )
                })
                .collect();
            f.counters(
                "vrrp_transitions",
                "VRRP state changes, by new state and reason.",
                &transitions,
            )?;
            f.counters(
                "vrrp_adverts_sent",
                "VRRP advertisements sent.",
                &[(vrid(), status.adverts_sent)],
            )?;
            f.counters(
                "vrrp_adverts_received",
                "VRRP advertisements received and accepted.",
                &[(vrid(), status.adverts_received)],
            )?;
            let dropped: Vec<(Labels, u64)> = status
                .dropped
                .iter()
                .map(|(reason, count)| {
                    ([vrid(), vec![("reason", reason.clone())]].concat(), *count)
                })
                .collect();
            f.counters(
                "vrrp_packets_dropped",
                "VRRP packets dropped, by reason.",
                &dropped,
            )?;
            let trackers: Vec<(Labels, i64)> = status
                .trackers
                .iter()
                .map(|t| {
                    (
                        [vrid(), vec![("tracker", t.name.clone())]].concat(),
                        i64::from(t.healthy),
                    )
                })
                .collect();
            f.gauges(
                "vrrp_tracker_up",
                "1 while a tracker's check passes.",
                &trackers,
            )?;
        }

        let frontends = state.frontends();
        let mut accepted = Vec::new();
        let mut active = Vec::new();
        let mut refused = Vec::new();
        let mut retries = Vec::new();
        let mut up = Vec::new();
        let mut backend_active = Vec::new();
        let mut backend_total = Vec::new();
        let mut failures = Vec::new();
        let mut bytes = Vec::new();
        let mut checks = Vec::new();
        let mut latency = Vec::new();
        for frontend in &frontends {
            let fl = || vec![("frontend", frontend.name.clone())];
            accepted.push((fl(), frontend.stats.accepted.get()));
            active.push((fl(), frontend.stats.active.get() as i64));
            refused.push((fl(), frontend.stats.refused.get()));
            retries.push((fl(), frontend.stats.retries.get()));
            for backend in &frontend.pool.members().backends {
                let bl = || {
                    vec![
                        ("frontend", frontend.name.clone()),
                        ("backend", backend.name.clone()),
                        ("address", backend.address.to_string()),
                    ]
                };
                up.push((bl(), i64::from(backend.is_healthy())));
                backend_active.push((bl(), backend.active() as i64));
                backend_total.push((bl(), backend.total.get()));
                failures.push((bl(), backend.connect_failures.get()));
                bytes.push((
                    [bl(), vec![("direction", "to_backend".into())]].concat(),
                    backend.bytes_to_backend.get(),
                ));
                bytes.push((
                    [bl(), vec![("direction", "to_client".into())]].concat(),
                    backend.bytes_to_client.get(),
                ));
                checks.push((
                    [bl(), vec![("result", "ok".into())]].concat(),
                    load(&backend.check.passed),
                ));
                checks.push((
                    [bl(), vec![("result", "failed".into())]].concat(),
                    load(&backend.check.failed),
                ));
                latency.push((bl(), Arc::clone(&backend.check)));
            }
        }
        f.counters(
            "frontend_connections",
            "Client connections accepted.",
            &accepted,
        )?;
        f.gauges(
            "frontend_connections_active",
            "Client sessions open now.",
            &active,
        )?;
        f.counters("frontend_refused", "Clients no backend accepted.", &refused)?;
        f.counters(
            "frontend_retries",
            "Backend connects that failed before another backend accepted.",
            &retries,
        )?;
        f.gauges(
            "backend_up",
            "1 while the backend's health check passes.",
            &up,
        )?;
        f.gauges(
            "backend_connections_active",
            "Sessions open to the backend.",
            &backend_active,
        )?;
        f.counters(
            "backend_connections",
            "Sessions opened to the backend.",
            &backend_total,
        )?;
        f.counters(
            "backend_connect_failures",
            "Connects to the backend that failed or timed out.",
            &failures,
        )?;
        f.counters("backend_bytes", "Bytes forwarded, by direction.", &bytes)?;
        f.counters(
            "backend_checks",
            "Health checks of the backend, by result.",
            &checks,
        )?;
        {
            let mut metric = f.encoder.encode_descriptor(
                "backend_check_duration_seconds",
                "How long each health check of the backend took.",
                None,
                MetricType::Histogram,
            )?;
            for (labels, record) in &latency {
                record.latency.encode(metric.encode_family(labels)?)?;
            }
        }

        if let Some(dnat) = state.dnat() {
            let status = dnat.snapshot();
            let targets: Vec<(Labels, i64)> = status
                .targets
                .iter()
                .map(|t| {
                    (
                        vec![("target", t.node.clone()), ("address", t.address.clone())],
                        i64::from(t.loaded),
                    )
                })
                .collect();
            f.gauges(
                "dnat_target_loaded",
                "1 while the DNAT table sends new flows to the target.",
                &targets,
            )?;
            let loaded = status.targets.iter().filter(|t| t.loaded).count();
            let healthy = status.targets.iter().filter(|t| t.healthy).count();
            f.gauges(
                "dnat_targets",
                "DNAT targets, loaded in the table and healthy by their checks.",
                &[
                    (vec![("set", "loaded".into())], loaded as i64),
                    (vec![("set", "healthy".into())], healthy as i64),
                ],
            )?;
            f.gauges(
                "dnat_fail_open",
                "1 while no target is healthy and the last set is kept.",
                &[(vec![], i64::from(status.fail_open))],
            )?;
            f.counters(
                "dnat_changes",
                "Changes of the DNAT target set.",
                &[(vec![], status.changes)],
            )?;
            let observed: Vec<(Labels, u64)> = status
                .targets
                .iter()
                .map(|t| {
                    (
                        vec![("target", t.node.clone()), ("address", t.address.clone())],
                        t.observed_down,
                    )
                })
                .collect();
            f.counters(
                "dnat_observed_down",
                "Times the passive watch took a DNAT target down (new connections left unanswered).",
                &observed,
            )?;
            f.counters(
                "dnat_forgotten_flows",
                "Conntrack entries of unanswered connections deleted when their target left the set.",
                &[(vec![], status.forgotten_flows)],
            )?;
        }

        if let Some(follow) = state.follow() {
            let status = follow.snapshot();
            encode_follow(&mut f, &status)?;
        }
        Ok(())
    }
}

/// The mesh follower: where this node routes the VIP, and what it heard.
fn encode_follow(f: &mut Family<'_, '_>, status: &FollowStatus) -> std::fmt::Result {
    // One series per holder and per peerless route, so a query sees a 0
    // rather than no series when the route is elsewhere.
    let mut routes: Vec<(Labels, i64)> = status
        .holders
        .iter()
        .map(|holder| {
            let followed = status.route == "holder" && status.holder.as_ref() == Some(holder);
            (
                vec![("route", "holder".to_owned()), ("holder", holder.clone())],
                i64::from(followed),
            )
        })
        .collect();
    for route in PEERLESS_ROUTES {
        routes.push((
            vec![("route", route.to_owned()), ("holder", String::new())],
            i64::from(status.route == route),
        ));
    }
    f.gauges(
        "follow_route",
        "1 for where this node routes the VIP on the WireGuard mesh: a holder's peer, local (this node is master) or nowhere (no master trusted).",
        &routes,
    )?;
    f.counters(
        "follow_route_changes",
        "Changes of the VIP's route on the mesh.",
        &[(vec![], status.changes)],
    )?;
    f.float_gauges(
        "follow_route_changed_timestamp_seconds",
        "When the VIP's route on the mesh last changed (Unix time; the start at first).",
        &[(vec![], status.since)],
    )?;
    f.gauges(
        "follow_route_applied",
        "1 while the WireGuard device carries the route; 0 while `wg` fails (vipd retries).",
        &[(vec![], i64::from(status.applied))],
    )?;
    f.counters(
        "follow_route_repairs",
        "Times the WireGuard device routed the VIP elsewhere (changed outside vipd, e.g. `wg syncconf`) and was put back.",
        &[(vec![], status.repairs)],
    )?;
    let last_change: Vec<(Labels, f64)> = status
        .last_change_ms
        .map(|ms| (vec![], ms / 1000.0))
        .into_iter()
        .collect();
    f.float_gauges(
        "follow_route_change_duration_seconds",
        "How long the last change of the WireGuard device took (reading it, then `wg set`).",
        &last_change,
    )?;
    f.counters(
        "follow_adverts_received",
        "Adverts from the VIP holders received and followed.",
        &[(vec![], status.adverts_received)],
    )?;
    let dropped: Vec<(Labels, u64)> = status
        .dropped
        .iter()
        .map(|(reason, count)| (vec![("reason", reason.clone())], *count))
        .collect();
    f.counters(
        "follow_packets_dropped",
        "VRRP packets the follower dropped, by reason.",
        &dropped,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mesh::follow::SharedFollowStatus;

    fn exposition(follow: Option<FollowStatus>) -> String {
        let state = Arc::new(State::new("c", "worker-1", vec!["worker".into()], "c.toml"));
        if let Some(status) = follow {
            let shared = SharedFollowStatus::default();
            *shared.lock() = status;
            state.set_follow(Some(shared));
        }
        encode(&registry(state))
    }

    fn value(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn the_follower_shows_its_route_per_holder_and_its_counts() {
        let status = FollowStatus {
            interface: "wg7".into(),
            vip: "198.19.7.100/32".into(),
            holders: vec!["lb-a".into(), "lb-b".into()],
            route: "holder".into(),
            holder: Some("lb-b".into()),
            since: 1_800_000_000.5,
            changes: 3,
            applied: true,
            repairs: 1,
            last_change_ms: Some(12.5),
            adverts_received: 40,
            dropped: [("not_a_holder".to_owned(), 2)].into_iter().collect(),
            ..FollowStatus::default()
        };
        let text = exposition(Some(status.clone()));
        let route = |route: &str, holder: &str| {
            value(
                &text,
                &format!("vipd_follow_route{{route=\"{route}\",holder=\"{holder}\"}}"),
            )
        };
        assert_eq!(route("holder", "lb-b"), Some(1.0), "{text}");
        assert_eq!(route("holder", "lb-a"), Some(0.0), "{text}");
        assert_eq!(route("local", ""), Some(0.0), "{text}");
        assert_eq!(route("nowhere", ""), Some(0.0), "{text}");
        let one = |series: &str| value(&text, series);
        assert_eq!(one("vipd_follow_route_changes_total"), Some(3.0), "{text}");
        assert_eq!(one("vipd_follow_route_repairs_total"), Some(1.0), "{text}");
        assert_eq!(one("vipd_follow_route_applied"), Some(1.0), "{text}");
        assert_eq!(
            one("vipd_follow_route_changed_timestamp_seconds"),
            Some(1_800_000_000.5),
            "{text}"
        );
        assert_eq!(
            one("vipd_follow_route_change_duration_seconds"),
            Some(0.0125),
            "{text}"
        );
        assert_eq!(
            one("vipd_follow_adverts_received_total"),
            Some(40.0),
            "{text}"
        );
        assert_eq!(
            one("vipd_follow_packets_dropped_total{reason=\"not_a_holder\"}"),
            Some(2.0),
            "{text}"
        );

        // Routed nowhere, the change not applied: the other series flip.
        let nowhere = FollowStatus {
            route: "nowhere".into(),
            holder: None,
            applied: false,
            ..status
        };
        let text = exposition(Some(nowhere));
        let route = |route: &str, holder: &str| {
            value(
                &text,
                &format!("vipd_follow_route{{route=\"{route}\",holder=\"{holder}\"}}"),
            )
        };
        assert_eq!(route("holder", "lb-b"), Some(0.0), "{text}");
        assert_eq!(route("nowhere", ""), Some(1.0), "{text}");
        assert_eq!(
            value(&text, "vipd_follow_route_applied"),
            Some(0.0),
            "{text}"
        );
    }

    #[test]
    fn a_node_that_does_not_follow_has_no_follow_metrics() {
        assert!(!exposition(None).contains("vipd_follow_"));
    }
}
