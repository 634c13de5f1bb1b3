//! The result of a run and its renderings: a human table (stdout), one JSON line
//! (`--json`), a JSON object file (`--json-out`), a Markdown table (`--md-out` or next to
//! the JSON) and SVG plots (`--plots` or next to the JSON; see `plots`).
//!
//! Field keys are the JSON keys; the table and the Markdown show the same keys, grouped in
//! sections, so one glossary (loadtest/README.md) covers every output.

pub mod plots;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::cli::OutputArgs;
use crate::error::LoadError;
use crate::hist::{self, Hist};

/// Percentiles listed in the JSON file (`latency_percentiles`).
const PERCENTILES: [f64; 9] = [0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0];

#[derive(Debug, Clone)]
struct Section {
    name: &'static str,
    fields: Vec<(&'static str, Value)>,
    /// Left out of the table and the Markdown while every value is 0 or null (always in
    /// the JSON).
    quiet: bool,
}

impl Section {
    fn shown(&self) -> bool {
        !self.quiet
            || self
                .fields
                .iter()
                .any(|(_, v)| !(v.is_null() || v.as_f64() == Some(0.0)))
    }
}

/// One run's figures.
#[derive(Debug, Clone)]
pub struct Report {
    pub scenario: &'static str,
    /// One line saying what ran (first line of the table).
    pub title: String,
    sections: Vec<Section>,
    /// Samples of the latency plot, and what they measure.
    pub latency: Option<(Hist, &'static str)>,
    /// Events per second over the run, and what they are.
    pub timeline: Option<(Vec<u64>, &'static str)>,
}

impl Report {
    pub fn new(scenario: &'static str, title: String) -> Self {
        Self {
            scenario,
            title,
            sections: Vec::new(),
            latency: None,
            timeline: None,
        }
    }

    /// Starts a new group of fields.
    pub fn section(&mut self, name: &'static str) {
        self.sections.push(Section {
            name,
            fields: Vec::new(),
            quiet: false,
        });
    }

    /// Starts a group the table shows only when one of its values is not 0 or null.
    pub fn quiet_section(&mut self, name: &'static str) {
        self.section(name);
        if let Some(s) = self.sections.last_mut() {
            s.quiet = true;
        }
    }

    pub fn put(&mut self, key: &'static str, value: impl Into<Value>) {
        if self.sections.is_empty() {
            self.section("run");
        }
        if let Some(s) = self.sections.last_mut() {
            s.fields.push((key, value.into()));
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.sections
            .iter()
            .flat_map(|s| &s.fields)
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    pub fn u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    pub fn f64(&self, key: &str) -> Option<f64> {
        self.get(key)?.as_f64()
    }

    /// The flat object of `--json` (one line): `scenario` and every field.
    pub fn json_line(&self) -> Value {
        let mut m = Map::new();
        m.insert("scenario".into(), self.scenario.into());
        for (k, v) in self.sections.iter().flat_map(|s| &s.fields) {
            m.insert((*k).into(), v.clone());
        }
        Value::Object(m)
    }

    /// The `--json-out` object: the line plus the latency percentiles and the timeline.
    pub fn json_full(&self) -> Value {
        let mut v = self.json_line();
        if let (Some(o), Some((h, what))) = (v.as_object_mut(), &self.latency) {
            let rows: Vec<Value> = PERCENTILES
                .iter()
                .map(|p| serde_json::json!({ "percentile": p, "ms": hist::ms_at(h, p / 100.0) }))
                .collect();
            o.insert("latency_of".into(), (*what).into());
            o.insert("latency_percentiles".into(), rows.into());
        }
        if let (Some(o), Some((t, what))) = (v.as_object_mut(), &self.timeline) {
            o.insert("timeline_of".into(), (*what).into());
            o.insert("timeline_per_s".into(), t.clone().into());
        }
        v
    }

    /// The human table: the title, then `key  value` per field under section headings.
    pub fn table(&self) -> String {
        let width = self
            .sections
            .iter()
            .flat_map(|s| &s.fields)
            .map(|(k, _)| k.len())
            .max()
            .unwrap_or(0);
        let mut out = format!("{}\n", self.title);
        for s in self.sections.iter().filter(|s| s.shown()) {
            out.push_str(&format!("  [{}]\n", s.name));
            for (k, v) in &s.fields {
                out.push_str(&format!("    {k:<width$}  {}\n", human(v)));
            }
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = format!(
            "**{}**\n\n| section | field | value |\n|---|---|---|\n",
            self.title
        );
        for s in self.sections.iter().filter(|s| s.shown()) {
            for (k, v) in &s.fields {
                out.push_str(&format!("| {} | `{k}` | {} |\n", s.name, human(v)));
            }
        }
        out
    }
}

/// A value as the table shows it: integers with thousands separators, floats with three
/// significant decimals at most, objects as `key=value` lists, null as `-`.
pub fn human(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::Number(n) if n.is_u64() || n.is_i64() => {
            let s = n.to_string();
            let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
            let mut grouped = String::new();
            for (i, c) in digits.chars().enumerate() {
                if i > 0 && (digits.len() - i) % 3 == 0 {
                    grouped.push(',');
                }
                grouped.push(c);
            }
            format!("{sign}{grouped}")
        }
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            match f.abs() {
                a if a >= 1000.0 => format!("{f:.0}"),
                a if a >= 10.0 => format!("{f:.1}"),
                _ => format!("{f:.3}"),
            }
        }
        Value::Object(m) if m.is_empty() => "none".into(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", human(v)))
            .collect::<Vec<_>>()
            .join(", "),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn write(path: &Path, contents: &[u8]) -> Result<(), LoadError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| LoadError::Output {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
    }
    std::fs::write(path, contents).map_err(|e| LoadError::Output {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Prints the table (and the JSON line with `--json`) on stdout and writes the files the
/// output flags ask for. Returns the files written.
pub fn emit(report: &Report, out: &OutputArgs) -> Result<Vec<PathBuf>, LoadError> {
    print!("{}", report.table());
    if out.json {
        println!("{}", report.json_line());
    }
    let mut written = Vec::new();
    let stem = out
        .json_out
        .as_ref()
        .and_then(|p| p.file_stem())
        .map_or_else(
            || report.scenario.to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
    let beside = |suffix: &str| -> Option<PathBuf> {
        out.json_out
            .as_ref()
            .map(|p| p.with_file_name(format!("{stem}{suffix}")))
    };
    if let Some(p) = &out.json_out {
        let mut text = serde_json::to_vec_pretty(&report.json_full()).unwrap_or_default();
        text.push(b'\n');
        write(p, &text)?;
        written.push(p.clone());
    }
    if let Some(p) = out.md_out.clone().or_else(|| beside(".md")) {
        write(&p, report.markdown().as_bytes())?;
        written.push(p);
    }
    let plot_path = |suffix: &str| -> Option<PathBuf> {
        match &out.plots {
            Some(dir) => Some(dir.join(format!("{stem}{suffix}"))),
            None => beside(suffix),
        }
    };
    if let (Some(p), Some((h, what))) = (plot_path("-latency.svg"), &report.latency) {
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        plots::latency_svg(&p, &format!("{}: {what}", report.scenario), h).map_err(|reason| {
            LoadError::Output {
                path: p.clone(),
                reason,
            }
        })?;
        written.push(p);
    }
    if let (Some(p), Some((t, what))) = (plot_path("-timeline.svg"), &report.timeline) {
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        plots::timeline_svg(&p, &format!("{}: {what}", report.scenario), what, t).map_err(
            |reason| LoadError::Output {
                path: p.clone(),
                reason,
            },
        )?;
        written.push(p);
    }
    Ok(written)
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut r = Report::new("fanout", "fanout: 50 connections, 5 rooms".into());
        r.section("delivery");
        r.put("deliveries_total", 1_234_567u64);
        r.put("p99_ms", 1.23456);
        r.put("server_cpu_s", Value::Null);
        r.section("failures");
        r.put(
            "failures_by_reason",
            serde_json::json!({"timeout": 2, "tcp_refused": 1}),
        );
        let mut h = hist::new_ns();
        for v in 1..=1000u64 {
            h.record(v * 1_000).unwrap();
        }
        r.latency = Some((h, "delivery latency"));
        r.timeline = Some((vec![10, 20, 30, 0, 0], "deliveries per second"));
        r
    }

    #[test]
    fn json_line_table_and_markdown_carry_the_same_fields() {
        let r = sample();
        let j = r.json_line();
        assert_eq!(j["scenario"], "fanout");
        assert_eq!(j["deliveries_total"], 1_234_567);
        assert!(j["server_cpu_s"].is_null());
        assert_eq!(j["failures_by_reason"]["timeout"], 2);
        assert!(!j.to_string().contains('\n'));
        let t = r.table();
        assert!(t.starts_with("fanout: 50 connections"));
        assert!(t.contains("  [delivery]\n"));
        assert!(t.contains("deliveries_total    1,234,567\n"), "{t}");
        assert!(t.contains("p99_ms              1.235\n"), "{t}");
        assert!(
            t.contains("failures_by_reason  tcp_refused=1, timeout=2\n"),
            "{t}"
        );
        assert!(
            t.lines().all(|l| !l.starts_with('{')),
            "scripts take `^{{` lines as JSON"
        );
        let md = r.markdown();
        assert!(md.contains("| delivery | `p99_ms` | 1.235 |\n"), "{md}");
        let full = r.json_full();
        assert_eq!(
            full["timeline_per_s"],
            serde_json::json!([10, 20, 30, 0, 0])
        );
        assert_eq!(full["latency_percentiles"][1]["percentile"], 50.0);
        let p50 = full["latency_percentiles"][1]["ms"].as_f64().unwrap();
        assert!((p50 - 0.5).abs() < 0.001, "{p50}");
        assert_eq!(r.u64("deliveries_total"), Some(1_234_567));
    }

    #[test]
    fn human_formats() {
        assert_eq!(human(&Value::from(1000u64)), "1,000");
        assert_eq!(human(&Value::from(999u64)), "999");
        assert_eq!(human(&Value::from(-1_234_567i64)), "-1,234,567");
        assert_eq!(human(&Value::from(12.345)), "12.3");
        assert_eq!(human(&Value::from(12345.6)), "12346");
        assert_eq!(human(&serde_json::json!({})), "none");
    }

    #[test]
    fn files_go_next_to_the_json_unless_told_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let out = OutputArgs {
            json_out: Some(dir.path().join("run1.json")),
            ..Default::default()
        };
        let written = emit(&sample(), &out).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "run1.json",
                "run1.md",
                "run1-latency.svg",
                "run1-timeline.svg"
            ]
        );
        let j: Value = serde_json::from_slice(&std::fs::read(&written[0]).unwrap()).unwrap();
        assert_eq!(j["deliveries_total"], 1_234_567);
        let lat = std::fs::read_to_string(&written[2]).unwrap();
        assert!(
            lat.starts_with("<svg") && lat.contains("<polyline") && lat.contains("99.9%"),
            "{lat}"
        );
        let tl = std::fs::read_to_string(&written[3]).unwrap();
        assert!(tl.contains("<polyline") && tl.contains("deliveries per second"));
        // --plots and --md-out elsewhere, no JSON file.
        let out = OutputArgs {
            md_out: Some(dir.path().join("t.md")),
            plots: Some(dir.path().join("plots")),
            ..Default::default()
        };
        let written = emit(&sample(), &out).unwrap();
        assert_eq!(
            written,
            [
                dir.path().join("t.md"),
                dir.path().join("plots/fanout-latency.svg"),
                dir.path().join("plots/fanout-timeline.svg")
            ]
        );
    }
}
