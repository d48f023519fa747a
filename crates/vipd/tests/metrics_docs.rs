//! The metrics, their documentation and the Grafana dashboard agree: every
//! family the daemon exposes is in docs/operations.md's table, every name
//! there is exposed, and every name the dashboard queries exists.

use std::collections::BTreeSet;
use std::sync::Arc;

use vipd::api::State;
use vipd::config::resolve::Frontend as FrontendPlan;
use vipd::config::spec::Balance;
use vipd::mesh::follow::SharedFollowStatus;
use vipd::nftables::SharedDnatStatus;
use vipd::proxy::frontend::Frontend;
use vipd::proxy::pool::Backend;
use vipd::vrrp::status::SharedVrrpStatus;

fn root(path: &str) -> String {
    let dir = env!("CARGO_MANIFEST_DIR");
    std::fs::read_to_string(format!("{dir}/../../{path}")).unwrap()
}

/// `vipd_[a-z0-9_]+` words in `text`.
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(found) = text[i..].find("vipd_") {
        let start = i + found;
        let mut end = start + 5;
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        let before_ok =
            start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if before_ok {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    out
}

/// Every family a daemon with every subsystem exposes, as exposed (with
/// the `_total` of counters), from the `# TYPE` lines.
fn exposed() -> BTreeSet<String> {
    let state = Arc::new(State::new("c", "n", vec!["vip".into()], "cluster.toml"));
    let plan = FrontendPlan {
        name: "vip",
        listen: "127.0.0.1:6443".parse().unwrap(),
        backends: Vec::new(),
    };
    let frontend = Arc::new(Frontend::new(&plan, Balance::LeastConn));
    frontend.pool.replace(
        vec![Arc::new(Backend::new(
            "p1",
            "127.0.0.1:1".parse().unwrap(),
            false,
        ))],
        Balance::LeastConn,
    );
    state.set_subsystems(
        vec![frontend],
        Some(SharedVrrpStatus::default()),
        Some(SharedDnatStatus::default()),
    );
    state.set_follow(Some(SharedFollowStatus::default()));
    let text = vipd::api::metrics::encode(&vipd::api::metrics::registry(state));
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| {
            let mut words = rest.split(' ');
            let name = words.next().unwrap().to_owned();
            match words.next() {
                Some("counter") => format!("{name}_total"),
                _ => name,
            }
        })
        .collect()
}

#[test]
fn docs_list_exactly_the_exposed_metrics() {
    let docs = root("docs/operations.md");
    let section = docs
        .split("## Metrics")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/operations.md has a Metrics section");
    let documented = names(section);
    let exposed = exposed();
    let undocumented: Vec<_> = exposed.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&exposed).collect();
    assert!(
        undocumented.is_empty(),
        "exposed but not in docs/operations.md: {undocumented:?}"
    );
    assert!(
        missing.is_empty(),
        "documented but not exposed: {missing:?}"
    );
}

#[test]
fn the_dashboard_queries_only_real_metrics() {
    let dashboard: serde_json::Value =
        serde_json::from_str(&root("deploy/grafana/vipd.json")).unwrap();
    let exposed = exposed();
    let mut queried = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queried.extend(names(target["expr"].as_str().unwrap()));
        }
    }
    assert!(queried.len() > 10, "{queried:?}");
    for name in &queried {
        // A histogram is queried through its series.
        let family = name.strip_suffix("_bucket").unwrap_or(name);
        assert!(
            exposed.contains(family),
            "the dashboard queries {name}, which vipd does not expose"
        );
    }
}
