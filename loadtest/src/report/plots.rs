//! SVG plots with `plotters` (SVG backend only: text becomes `<text>` elements, no fonts
//! needed): latency by percentile on HdrHistogram's axis (x = −log10(1 − p), so 90 %, 99 %,
//! 99.9 %, 99.99 % are evenly spaced) and events per second over the run.

use std::path::Path;

use plotters::prelude::*;

use crate::hist::Hist;

const SIZE: (u32, u32) = (960, 540);

/// The x position of quantile `q` (0–1), capped at `max` (the 100th percentile itself is
/// infinitely far right).
fn x_of(q: f64, max: f64) -> f64 {
    if q >= 1.0 {
        max
    } else {
        (-(1.0 - q).log10()).min(max)
    }
}

/// Axis label of x position `x`: 0 → "0%", 1 → "90%", 2 → "99%", 3 → "99.9%".
fn percent_label(x: f64) -> String {
    let p = 100.0 - 100.0 / 10f64.powf(x);
    let decimals = (x.round() as usize).saturating_sub(2);
    format!("{p:.decimals$}%")
}

/// (x, latency ms) points of the percentile curve, and the x extent: one more decade than
/// the sample count resolves (1,000 samples: up to 99.9 %), within 2…6.
fn percentile_points(h: &Hist) -> (Vec<(f64, f64)>, f64) {
    let max_x = (h.len().max(1) as f64).log10().ceil().clamp(2.0, 6.0);
    let mut pts: Vec<(f64, f64)> = h
        .iter_quantiles(5)
        .map(|v| {
            (
                x_of(v.quantile_iterated_to(), max_x),
                v.value_iterated_to() as f64 / 1e6,
            )
        })
        .collect();
    if let Some(&(_, first)) = pts.first() {
        pts.insert(0, (0.0, first.min(h.min() as f64 / 1e6)));
    }
    pts.push((max_x, h.max() as f64 / 1e6));
    (pts, max_x)
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Latency (ms) by percentile.
pub fn latency_svg(path: &Path, title: &str, h: &Hist) -> Result<(), String> {
    let (pts, max_x) = percentile_points(h);
    let top = pts.iter().map(|p| p.1).fold(0.0, f64::max).max(0.001) * 1.1;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..max_x, 0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(max_x as usize + 1)
        .x_label_formatter(&|x| percent_label(*x))
        .x_desc("percentile")
        .y_desc("latency (ms)")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(pts, BLUE.stroke_width(2)))
        .map_err(err)?;
    root.present().map_err(err)
}

/// Events per second (one step per second).
pub fn timeline_svg(path: &Path, title: &str, y_desc: &str, per_s: &[u64]) -> Result<(), String> {
    // Trailing empty seconds are the unused end of the timeline, not part of the run.
    let len = per_s.iter().rposition(|v| *v > 0).map_or(1, |i| i + 1);
    let top = per_s.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.1;
    let mut pts = Vec::with_capacity(len * 2);
    for (i, v) in per_s.iter().take(len).enumerate() {
        pts.push((i as f64, *v as f64));
        pts.push(((i + 1) as f64, *v as f64));
    }
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..len as f64, 0f64..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(pts, RED.stroke_width(2)))
        .map_err(err)?;
    root.present().map_err(err)
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentile_axis() {
        assert_eq!(percent_label(0.0), "0%");
        assert_eq!(percent_label(1.0), "90%");
        assert_eq!(percent_label(2.0), "99%");
        assert_eq!(percent_label(3.0), "99.9%");
        assert_eq!(percent_label(4.0), "99.99%");
        assert!((x_of(0.999, 6.0) - 3.0).abs() < 1e-9);
        assert_eq!(x_of(1.0, 4.0), 4.0);
    }

    #[test]
    fn curve_is_monotonic_and_spans_the_axis() {
        let mut h = crate::hist::new_ns();
        for v in 1..=10_000u64 {
            h.record(v * 1_000).unwrap();
        }
        let (pts, max_x) = percentile_points(&h);
        assert_eq!(max_x, 4.0);
        assert_eq!(pts.first().map(|p| p.0), Some(0.0));
        assert_eq!(pts.last().map(|p| p.0), Some(4.0));
        assert!(pts.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 >= w[0].1));
        assert!((pts.last().unwrap().1 - 10.0).abs() < 0.01);
    }
}
