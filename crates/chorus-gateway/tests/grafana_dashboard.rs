//! `deploy/grafana/chorus.json` against `docs/metrics.md`: every metric name in every panel
//! expression is a documented family (a histogram's `_bucket`/`_sum`/`_count` series of a
//! documented histogram), every histogram is read through `_bucket` with `le` kept, and the
//! dashboard is well-formed (unique panel ids, a target per panel, the datasource variable).
//!
//! `deploy/prometheus/alerts.yml` (plain Prometheus) against the Helm chart's PrometheusRule and
//! the same docs: the same alert names in the same order, every rule with an expression, a
//! `for`, a severity and a summary, every metric it reads documented.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

fn root(path: &str) -> String {
    format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))
}

/// Family name → type, from the tables of docs/metrics.md.
fn documented() -> BTreeMap<String, String> {
    let doc = std::fs::read_to_string(root("docs/metrics.md")).unwrap();
    doc.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let kind = cells.get(2)?;
            (name.starts_with("chorus_") || name.starts_with("process_"))
                .then(|| (name.to_string(), kind.to_string()))
        })
        .collect()
}

/// Metric names in a PromQL expression: identifiers starting `chorus_` or `process_`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = (expr[i..].starts_with("chorus_") || expr[i..].starts_with("process_"))
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        if starts {
            let end = expr[i..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expr.len(), |n| i + n);
            out.insert(expr[i..end].to_string());
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn every_expression_uses_documented_families() {
    let doc = documented();
    assert!(
        doc.len() > 50,
        "docs/metrics.md parsed: {} families",
        doc.len()
    );
    let text = std::fs::read_to_string(root("deploy/grafana/chorus.json")).unwrap();
    let dash: Value = serde_json::from_str(&text).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(!panels.is_empty());
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(vars.contains(&"datasource"), "{vars:?}");

    let mut ids = BTreeSet::new();
    let mut used = BTreeSet::new();
    for panel in panels {
        let title = panel["title"].as_str().unwrap();
        assert!(ids.insert(panel["id"].as_u64().unwrap()), "{title}: id");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no targets");
        for target in targets {
            let expr = target["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{title}: {expr}");
            for name in names {
                let (family, series) = match ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).map(|f| (f.to_string(), *s)))
                {
                    Some((f, s)) if doc.get(&f).is_some_and(|t| t == "histogram") => (f, s),
                    _ => (name.clone(), ""),
                };
                let kind = doc
                    .get(&family)
                    .unwrap_or_else(|| panic!("{title}: {name} is not in docs/metrics.md"));
                if kind == "histogram" {
                    assert_eq!(series, "_bucket", "{title}: read {family} through _bucket");
                    assert!(expr.contains("le"), "{title}: keep `le` for {family}");
                }
                if kind == "counter" {
                    assert!(
                        expr.contains("rate("),
                        "{title}: counter {family} without rate"
                    );
                }
                used.insert(family);
            }
        }
    }
    // The health families operators look at first are on the dashboard.
    for must in [
        "chorus_engine_up",
        "chorus_presence_client_synced",
        "chorus_client_slow_total",
        "chorus_broadcast_duration_seconds",
        "chorus_transport_connections",
        "process_resident_memory_bytes",
    ] {
        assert!(used.contains(must), "{must} is not on the dashboard");
    }
}

#[test]
fn names_are_found_in_expressions() {
    let got = metric_names("sum by (le) (rate(chorus_a_bucket[5m])) / process_open_fds");
    let want: BTreeSet<String> = ["chorus_a_bucket", "process_open_fds"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(got, want);
    assert!(metric_names("my_chorus_x").is_empty());
}

#[test]
fn plain_prometheus_alerts_match_the_chart_and_the_docs() {
    let text = std::fs::read_to_string(root("deploy/prometheus/alerts.yml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let rules: Vec<&serde_yaml::Value> = doc["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .collect();
    let names: Vec<&str> = rules.iter().map(|r| r["alert"].as_str().unwrap()).collect();

    let chart = std::fs::read_to_string(root("helm/chorus/templates/prometheusrule.yaml")).unwrap();
    let chart_names: Vec<&str> = chart
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(
        names, chart_names,
        "alerts.yml and the chart's PrometheusRule"
    );
    assert_eq!(names.len(), 5);

    let families = documented();
    let chorus_only = |m: &String| m.starts_with("chorus_");
    for r in &rules {
        let name = r["alert"].as_str().unwrap();
        let expr = r["expr"].as_str().unwrap();
        assert!(r["for"].as_str().is_some(), "{name}: no `for`");
        assert!(
            matches!(
                r["labels"]["severity"].as_str(),
                Some("critical" | "warning")
            ),
            "{name}: severity"
        );
        assert!(
            r["annotations"]["summary"].as_str().is_some(),
            "{name}: summary"
        );
        for m in metric_names(expr).iter().filter(|m| chorus_only(m)) {
            let family = m.strip_suffix("_bucket").unwrap_or(m);
            let kind = families
                .get(family)
                .unwrap_or_else(|| panic!("{name}: {m} is not in docs/metrics.md"));
            if m.ends_with("_bucket") {
                assert_eq!(kind, "histogram", "{name}: {m}");
            }
        }
    }
}
