//! The drill's report: a table for the terminal, the same as JSON, and an
//! SVG timeline per scenario (requests over time, VIP holders, node states).

use std::fmt::Write as _;

use super::drill::ScenarioResult;

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{v:.0} ms"),
        None => "-".to_owned(),
    }
}

/// The median and the maximum of `values`, None when empty.
pub fn median_max(values: &[f64]) -> Option<(f64, f64)> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = match n {
        0 => return None,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    };
    Some((median, sorted[n - 1]))
}

fn repoint(values: &[f64]) -> String {
    match median_max(values) {
        Some((median, max)) => format!("{median:.0} / {max:.0} ms"),
        None => "-".to_owned(),
    }
}

/// The terminal table: one row per scenario and stack, grouped by scenario
/// so the stacks sit side by side; then every failed check.
pub fn table(results: &[ScenarioResult]) -> String {
    let header = [
        "scenario",
        "stack",
        "takeover",
        "outage fault / heal",
        "disrupted",
        "failed (connects) / requests",
        "slow",
        "streams lost",
        "converged",
        "re-point med / max",
        "end state",
    ];
    let mut rows: Vec<[String; 11]> = Vec::new();
    let mut order: Vec<&str> = Vec::new();
    for r in results {
        if !order.contains(&r.scenario.name()) {
            order.push(r.scenario.name());
        }
    }
    for name in &order {
        for r in results.iter().filter(|r| r.scenario.name() == *name) {
            if let Some(why) = &r.skipped {
                rows.push([
                    (*name).to_owned(),
                    r.stack.as_str().to_owned(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    format!("skipped: {why}"),
                ]);
                continue;
            }
            rows.push([
                (*name).to_owned(),
                r.stack.as_str().to_owned(),
                ms(r.takeover_ms),
                format!("{:.0} / {:.0} ms", r.outage_ms, r.heal_outage_ms),
                format!("{:.0} ms", r.disrupted_ms),
                format!("{} ({}) / {}", r.failed, r.failed_connects, r.requests),
                r.slow_connects.to_string(),
                format!("{} / {}", r.streams_lost, r.streams),
                ms(r.converge_ms),
                repoint(&r.repoint_ms),
                if r.passed { "ok" } else { "WRONG" }.to_owned(),
            ]);
        }
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: &[String], out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(
        &header.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
        &mut out,
    );
    line(
        &widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>(),
        &mut out,
    );
    for row in &rows {
        line(row, &mut out);
    }
    for stack in [super::stack::Stack::Vipd, super::stack::Stack::Classic] {
        let all: Vec<f64> = results
            .iter()
            .filter(|r| r.stack == stack)
            .flat_map(|r| r.repoint_ms.iter().copied())
            .collect();
        if let Some((median, max)) = median_max(&all) {
            let _ = writeln!(
                out,
                "\n{} re-point (a new master's transition -> a follower's WireGuard route written), {} changes: median {median:.1} ms, max {max:.1} ms",
                stack.as_str(),
                all.len()
            );
        }
    }
    let wrong: Vec<String> = results
        .iter()
        .flat_map(|r| {
            r.checks.iter().filter(|c| !c.ok).map(move |c| {
                format!(
                    "  {} {}: {} ({})",
                    r.stack.as_str(),
                    r.scenario.name(),
                    c.what,
                    c.detail
                )
            })
        })
        .collect();
    if !wrong.is_empty() {
        let _ = writeln!(out, "\nwrong end states:");
        for w in wrong {
            let _ = writeln!(out, "{w}");
        }
    }
    out
}

/// The JSON report: `{results: [...]}`, every measurement, check and the timeline.
pub fn json(results: &[ScenarioResult]) -> serde_json::Value {
    serde_json::json!({
        "passed": results.iter().all(|r| r.passed),
        "results": results,
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn state_colour(state: &str) -> &'static str {
    match state {
        "running" => "#d9f2d9",
        "unhealthy" => "#ffd27f",
        "partitioned" => "#c9b3ff",
        _ => "#f4a6a6", // killed, stopped, link down
    }
}

/// The SVG timeline: one panel per scenario (and stack). In each: a tick
/// per request at its start (green ok, red failed), a row per holder with
/// the VIP (blue) over its condition, a row per plane with its condition;
/// the fault and the heal as vertical lines.
pub fn svg(results: &[ScenarioResult]) -> String {
    const WIDTH: f64 = 960.0;
    const LEFT: f64 = 110.0;
    const RIGHT: f64 = 20.0;
    const ROW: f64 = 18.0;
    let plot = WIDTH - LEFT - RIGHT;
    let panels: Vec<&ScenarioResult> = results.iter().filter(|r| r.skipped.is_none()).collect();
    let mut body = String::new();
    let mut y = 30.0;
    for r in &panels {
        let nodes: Vec<String> = {
            let mut names: Vec<String> = r.holders.iter().map(|(h, _)| h.clone()).collect();
            names.extend(r.planes.iter().cloned());
            for e in &r.events {
                if !names.contains(&e.node) {
                    names.push(e.node.clone());
                }
            }
            names
        };
        let rows = 2 + nodes.len();
        let height = 34.0 + ROW * rows as f64 + 22.0;
        let scale = |t: f64| LEFT + plot * (t / r.end_ms.max(1.0)).clamp(0.0, 1.0);
        let _ = writeln!(body, r#"<g transform="translate(0,{y})">"#);
        let _ = writeln!(
            body,
            r#"<text x="10" y="14" font-weight="bold">{} — {}: {} ({})</text>"#,
            escape(r.stack.as_str()),
            escape(r.scenario.name()),
            escape(&r.description),
            if r.passed {
                "end state ok"
            } else {
                "end state WRONG"
            }
        );
        let top = 24.0;
        // Requests.
        let _ = writeln!(
            body,
            r#"<text x="10" y="{}" font-size="11">requests</text>"#,
            top + 13.0
        );
        // One column per pixel: green if a request started there
        // succeeded, amber over it if one connected only after a SYN
        // retransmission, red if one failed.
        let columns = plot.ceil() as usize + 1;
        let mut ok_at = vec![0u32; columns];
        let mut slow_at = vec![0u32; columns];
        let mut failed_at = vec![0u32; columns];
        for &(at, ok, slow) in &r.requests_timeline {
            let column = ((scale(at) - LEFT).max(0.0) as usize).min(columns - 1);
            match (ok, slow) {
                (true, false) => ok_at[column] += 1,
                (true, true) => slow_at[column] += 1,
                (false, _) => failed_at[column] += 1,
            }
        }
        // Runs of columns with a success become one rectangle.
        let mut column = 0;
        while column < columns {
            if ok_at[column] == 0 {
                column += 1;
                continue;
            }
            let start = column;
            while column < columns && ok_at[column] > 0 {
                column += 1;
            }
            let _ = writeln!(
                body,
                r##"<rect x="{:.1}" y="{}" width="{}" height="{}" fill="#2e9e44" fill-opacity="0.6" />"##,
                LEFT + start as f64,
                top + 8.0,
                column - start,
                2.0 * ROW - 10.0
            );
        }
        for (column, &slow) in slow_at.iter().enumerate() {
            if slow > 0 {
                let x = LEFT + column as f64 + 0.5;
                let _ = writeln!(
                    body,
                    r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#e6a700" stroke-width="1.5"><title>{slow} slow (SYN retransmitted)</title></line>"##,
                    top + 2.0,
                    top + 2.0 * ROW - 2.0
                );
            }
        }
        for (column, &failed) in failed_at.iter().enumerate() {
            if failed > 0 {
                let x = LEFT + column as f64 + 0.5;
                let _ = writeln!(
                    body,
                    r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#d62728" stroke-width="1.5"><title>{failed} failed</title></line>"##,
                    top + 2.0,
                    top + 2.0 * ROW - 2.0
                );
            }
        }
        // Nodes: condition band, VIP bar on top for holders.
        for (i, node) in nodes.iter().enumerate() {
            let ry = top + 2.0 * ROW + ROW * i as f64;
            let _ = writeln!(
                body,
                r#"<text x="10" y="{}" font-size="11">{}</text>"#,
                ry + 13.0,
                escape(node)
            );
            let mut since = 0.0;
            let mut state = "running".to_owned();
            let mut changes: Vec<(f64, String)> = r
                .events
                .iter()
                .filter(|e| &e.node == node)
                .map(|e| (e.at_ms, e.state.clone()))
                .collect();
            changes.push((r.end_ms, String::new()));
            for (at, next) in changes {
                let (x0, x1) = (scale(since), scale(at));
                let _ = writeln!(
                    body,
                    r#"<rect x="{x0:.1}" y="{}" width="{:.1}" height="{}" fill="{}"><title>{}</title></rect>"#,
                    ry + 2.0,
                    (x1 - x0).max(0.0),
                    ROW - 4.0,
                    state_colour(&state),
                    escape(&state)
                );
                since = at;
                state = next;
            }
            if let Some((_, spans)) = r.holders.iter().find(|(h, _)| h == node) {
                for &(from, to) in spans {
                    let (x0, x1) = (scale(from), scale(to));
                    let _ = writeln!(
                        body,
                        r##"<rect x="{x0:.1}" y="{}" width="{:.1}" height="6" fill="#1f5fbf"><title>VIP {from:.0}-{to:.0} ms</title></rect>"##,
                        ry + 6.0,
                        (x1 - x0).max(1.0)
                    );
                }
            }
        }
        // Fault and heal.
        let bottom = top + ROW * rows as f64;
        for (at, colour, label) in [
            (r.fault_ms, "#d62728", "fault"),
            (r.heal_ms, "#2e9e44", "heal"),
        ] {
            let x = scale(at);
            let _ = writeln!(
                body,
                r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{bottom}" stroke="{colour}" stroke-dasharray="4 3" /><text x="{:.1}" y="{}" font-size="10" fill="{colour}">{label}</text>"##,
                x + 2.0,
                bottom + 11.0
            );
        }
        // Time axis: a tick per second.
        let secs = (r.end_ms / 1000.0).floor() as u32;
        for s in 0..=secs {
            let x = scale(f64::from(s) * 1000.0);
            let _ = writeln!(
                body,
                r##"<text x="{x:.1}" y="{}" font-size="9" fill="#666" text-anchor="middle">{s}s</text>"##,
                bottom + 20.0
            );
        }
        let _ = writeln!(body, "</g>");
        y += height + 16.0;
    }
    let legend = r##"<g font-size="11"><rect x="10" y="6" width="10" height="10" fill="#2e9e44"/><text x="24" y="15">request ok</text><rect x="100" y="6" width="10" height="10" fill="#d62728"/><text x="114" y="15">request failed</text><rect x="210" y="6" width="10" height="10" fill="#1f5fbf"/><text x="224" y="15">holds the VIP</text><rect x="320" y="6" width="10" height="10" fill="#d9f2d9"/><text x="334" y="15">running</text><rect x="400" y="6" width="10" height="10" fill="#f4a6a6"/><text x="414" y="15">killed / stopped / link down</text><rect x="590" y="6" width="10" height="10" fill="#ffd27f"/><text x="604" y="15">unhealthy</text><rect x="680" y="6" width="10" height="10" fill="#c9b3ff"/><text x="694" y="15">partitioned</text></g>"##;
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{y:.0}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n{legend}\n{body}</svg>\n"
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::lab::client::ClientLog;
    use crate::lab::drill::{Check, Event, Scenario};
    use crate::lab::stack::Stack;

    fn result(stack: Stack, passed: bool) -> ScenarioResult {
        ScenarioResult {
            stack,
            scenario: Scenario::MasterKill,
            description: Scenario::MasterKill.describe().into(),
            skipped: None,
            fault_ms: 1000.0,
            heal_ms: 5000.0,
            end_ms: 9000.0,
            takeover_ms: Some(250.0),
            converge_ms: Some(300.0),
            outage_ms: 12.0,
            heal_outage_ms: 0.0,
            disrupted_ms: 12.0,
            requests: 3,
            failed: 1,
            failed_connects: 0,
            slow_connects: 0,
            failed_after_heal: 0,
            streams: 2,
            streams_lost: 2,
            repoint_ms: if stack == Stack::Vipd {
                vec![14.0, 9.0, 30.0]
            } else {
                Vec::new()
            },
            routes: None,
            failures: BTreeMap::from([("connect timed out".to_owned(), 1)]),
            checks: vec![Check {
                what: "exactly one VIP holder at the end: holder-1".into(),
                ok: passed,
                detail: "VIP on [\"holder-1\", \"holder-2\"]".into(),
            }],
            passed,
            holders: vec![
                ("holder-1".into(), vec![(0.0, 9000.0)]),
                ("holder-2".into(), vec![(1250.0, 5300.0)]),
            ],
            planes: vec!["plane-1".into()],
            events: vec![Event {
                at_ms: 1000.0,
                node: "holder-1".into(),
                state: "killed".into(),
            }],
            requests_timeline: vec![
                (500.0, true, false),
                (1100.0, false, false),
                (1200.0, true, true),
            ],
            log: ClientLog::default(),
        }
    }

    #[test]
    fn the_table_puts_stacks_side_by_side_and_names_wrong_states() {
        let text = table(&[result(Stack::Vipd, true), result(Stack::Classic, false)]);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("scenario"), "{text}");
        assert!(
            lines[2].contains("master-kill") && lines[2].contains("vipd"),
            "{text}"
        );
        assert!(
            lines[3].contains("classic") && lines[3].contains("WRONG"),
            "{text}"
        );
        assert!(
            lines[2].contains("250 ms") && lines[2].contains("1 (0) / 3"),
            "{text}"
        );
        assert!(
            text.contains("classic master-kill: exactly one VIP holder"),
            "{text}"
        );
        assert!(
            lines[2].contains("14 / 30 ms"),
            "re-point median / max: {text}"
        );
        assert!(
            text.contains("vipd re-point")
                && text.contains("3 changes: median 14.0 ms, max 30.0 ms"),
            "{text}"
        );
        assert!(!text.contains("classic re-point"), "{text}");
    }

    #[test]
    fn median_and_maximum() {
        assert_eq!(median_max(&[]), None);
        assert_eq!(median_max(&[3.0]), Some((3.0, 3.0)));
        assert_eq!(median_max(&[4.0, 1.0, 2.0, 3.0]), Some((2.5, 4.0)));
    }

    #[test]
    fn json_and_svg_carry_every_scenario() {
        let results = [result(Stack::Vipd, true), result(Stack::Classic, false)];
        let value = json(&results);
        assert_eq!(value["passed"], false);
        assert_eq!(value["results"][0]["scenario"], "master-kill");
        assert_eq!(value["results"][1]["stack"], "classic");
        let drawn = svg(&results);
        assert!(drawn.starts_with("<svg") && drawn.trim_end().ends_with("</svg>"));
        assert!(drawn.contains("1 slow (SYN retransmitted)"), "{drawn}");
        assert_eq!(drawn.matches("<g transform").count(), 2);
        assert!(drawn.contains("1 failed"), "a failed request is drawn");
        assert!(drawn.contains("end state WRONG"));
        assert!(drawn.contains(">plane-1</text>"), "every plane has a row");
    }
}
