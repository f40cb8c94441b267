//! Hand-drawn SVG charts.
//!
//! * One step: p50 and p99 latency per time window (answers by completion time).
//! * A sweep: the latency–throughput curve, p50 and p99 against answers/s, one point
//!   per step, labelled with its concurrency or rate.
//!
//! The latency axis turns logarithmic when the values span more than 30×.

use std::fmt::Write as _;

use crate::format::{three_decimals, trim_float};
use crate::report::{Report, StepReport};
use crate::stats::WindowReport;

const W: f64 = 860.0;
const H: f64 = 500.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 60.0;
const BOTTOM: f64 = 60.0;
const P50: &str = "#1f77b4";
const P99: &str = "#d62728";

impl Report {
    /// An SVG chart: latency over time for one step, the latency–throughput curve for a
    /// sweep.
    pub fn chart_svg(&self) -> String {
        render(self)
    }
}

/// The chart that fits the report: the sweep curve for a sweep, latency over time for
/// a single step.
pub fn render(report: &Report) -> String {
    let title = format!(
        "{} · {}",
        report.target,
        report
            .models
            .iter()
            .map(|m| m.label.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    match report.steps.as_slice() {
        [one] if !report.sweep => latency_over_time(one, &title),
        steps => sweep_curve(steps, &title),
    }
}

/// p50/p99 per window over time.
pub fn latency_over_time(step: &StepReport, title: &str) -> String {
    let half = step.window_s / 2.0;
    let pts = |f: fn(&WindowReport) -> Option<u64>| -> Vec<(f64, f64)> {
        step.windows
            .iter()
            .filter_map(|w| f(w).map(|v| (w.start_s + half, v as f64 / 1000.0)))
            .collect()
    };
    let p50 = pts(|w| w.p50_us);
    let p99 = pts(|w| w.p99_us);
    let x_max = step
        .windows
        .last()
        .map_or(1.0, |w| w.start_s + step.window_s);
    let x = Axis::linear(0.0, x_max);
    let y = Axis::latency(p50.iter().chain(&p99).map(|p| p.1));
    let subtitle = format!(
        "{} · {} answers, {} errors · p50/p99 per {}s window",
        step.label(),
        step.answers,
        step.errors,
        trim_float(step.window_s)
    );
    let mut svg = Svg::new(title, &subtitle);
    svg.axes(&x, &y, "seconds after warm-up", "latency (ms)");
    svg.series(&x, &y, &p50, P50, &[]);
    svg.series(&x, &y, &p99, P99, &[]);
    svg.legend(&[("p50", P50), ("p99", P99)]);
    svg.finish()
}

/// Latency against throughput, one point per step.
pub fn sweep_curve(steps: &[StepReport], title: &str) -> String {
    let pts = |f: fn(&StepReport) -> u64| -> Vec<(f64, f64)> {
        steps
            .iter()
            .filter(|s| s.latency.count > 0)
            .map(|s| (s.throughput, f(s) as f64 / 1000.0))
            .collect()
    };
    let p50 = pts(|s| s.latency.p50_us);
    let p99 = pts(|s| s.latency.p99_us);
    let labels: Vec<String> = steps
        .iter()
        .filter(|s| s.latency.count > 0)
        .map(StepReport::short_label)
        .collect();
    let x_max = p50.iter().map(|p| p.0).fold(0.0, f64::max);
    let x = Axis::linear(0.0, x_max);
    let y = Axis::latency(p50.iter().chain(&p99).map(|p| p.1));
    let mode = match steps.first().map(|s| s.mode.as_str()) {
        Some("open") => "open-loop sweep",
        _ => "closed-loop sweep",
    };
    let mut svg = Svg::new(title, &format!("{mode} · {} steps", steps.len()));
    svg.axes(&x, &y, "throughput (answers/s)", "latency (ms)");
    svg.series(&x, &y, &p50, P50, &[]);
    svg.series(&x, &y, &p99, P99, &labels);
    svg.legend(&[("p50", P50), ("p99", P99)]);
    svg.finish()
}

struct Axis {
    min: f64,
    max: f64,
    log: bool,
    ticks: Vec<f64>,
}

impl Axis {
    fn linear(min: f64, max: f64) -> Self {
        // 3% headroom, so that a point at the maximum keeps its label inside.
        let max = if max.is_finite() && max > min {
            min + (max - min) * 1.03
        } else {
            min + 1.0
        };
        let step = nice_step((max - min) / 5.0);
        let top = (max / step).ceil() * step;
        let n = (((top - min) / step).round() as usize).min(50);
        let ticks = (0..=n).map(|i| min + i as f64 * step).collect();
        Self {
            min,
            max: top,
            log: false,
            ticks,
        }
    }

    fn log(min: f64, max: f64) -> Self {
        let lo = min.log10().floor();
        let hi = max.log10().ceil().max(lo + 1.0);
        let mut ticks = Vec::new();
        let decades = (hi - lo) as i32;
        for e in 0..=decades {
            let base = 10f64.powf(lo + f64::from(e));
            ticks.push(base);
            if decades <= 2 && e < decades {
                ticks.push(base * 2.0);
                ticks.push(base * 5.0);
            }
        }
        Self {
            min: 10f64.powf(lo),
            max: 10f64.powf(hi),
            log: true,
            ticks,
        }
    }

    /// Linear from 0, or logarithmic when the positive values span more than 30×.
    fn latency(values: impl Iterator<Item = f64>) -> Self {
        let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
        for v in values.filter(|v| v.is_finite() && *v > 0.0) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if hi > 0.0 && hi / lo > 30.0 {
            Self::log(lo, hi)
        } else {
            Self::linear(0.0, hi)
        }
    }

    /// 0..1 along the axis.
    fn frac(&self, v: f64) -> f64 {
        let f = if self.log {
            let v = v.max(self.min);
            (v.log10() - self.min.log10()) / (self.max.log10() - self.min.log10())
        } else {
            (v - self.min) / (self.max - self.min)
        };
        if f.is_finite() {
            f.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let e = 10f64.powf(raw.log10().floor());
    let f = raw / e;
    let n = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    n * e
}

fn tick_label(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        three_decimals(v)
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

struct Svg {
    out: String,
}

impl Svg {
    fn new(title: &str, subtitle: &str) -> Self {
        let mut out = String::new();
        let _ = writeln!(
            out,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{}</text>"#,
            esc(title)
        );
        let _ = writeln!(
            out,
            r##"<text x="{LEFT}" y="42" fill="#555">{}</text>"##,
            esc(subtitle)
        );
        Self { out }
    }

    fn px(x: &Axis, v: f64) -> f64 {
        LEFT + x.frac(v) * (W - LEFT - RIGHT)
    }

    fn py(y: &Axis, v: f64) -> f64 {
        H - BOTTOM - y.frac(v) * (H - TOP - BOTTOM)
    }

    fn axes(&mut self, x: &Axis, y: &Axis, x_label: &str, y_label: &str) {
        let o = &mut self.out;
        let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
        for &t in &x.ticks {
            let px = Self::px(x, t);
            let _ = writeln!(
                o,
                r##"<line x1="{px:.1}" y1="{y0}" x2="{px:.1}" y2="{y1}" stroke="#e5e5e5"/><text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                y0 + 18.0,
                tick_label(t)
            );
        }
        for &t in &y.ticks {
            let py = Self::py(y, t);
            let _ = writeln!(
                o,
                r##"<line x1="{x0}" y1="{py:.1}" x2="{x1}" y2="{py:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 - 8.0,
                py + 4.0,
                tick_label(t)
            );
        }
        let _ = writeln!(
            o,
            r##"<path d="M{x0},{y1} L{x0},{y0} L{x1},{y0}" fill="none" stroke="#333"/>"##
        );
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            (x0 + x1) / 2.0,
            H - 16.0,
            esc(x_label)
        );
        let scale = if y.log { " (log scale)" } else { "" };
        let _ = writeln!(
            o,
            r#"<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">{}{scale}</text>"#,
            (y0 + y1) / 2.0,
            (y0 + y1) / 2.0,
            esc(y_label)
        );
    }

    fn series(&mut self, x: &Axis, y: &Axis, pts: &[(f64, f64)], color: &str, labels: &[String]) {
        if pts.is_empty() {
            return;
        }
        let path = pts
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| {
                let cmd = if i == 0 { 'M' } else { 'L' };
                format!("{cmd}{:.1},{:.1}", Self::px(x, a), Self::py(y, b))
            })
            .collect::<Vec<_>>()
            .join(" ");
        let o = &mut self.out;
        let _ = writeln!(
            o,
            r#"<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>"#
        );
        for (i, &(a, b)) in pts.iter().enumerate() {
            let (px, py) = (Self::px(x, a), Self::py(y, b));
            let _ = writeln!(
                o,
                r#"<circle cx="{px:.1}" cy="{py:.1}" r="3" fill="{color}"><title>{} ms</title></circle>"#,
                tick_label(b)
            );
            if let Some(l) = labels.get(i) {
                // Right of the point, or left of it near the right edge.
                let (lx, anchor) = if px > W - RIGHT - 70.0 {
                    (px - 5.0, "end")
                } else {
                    (px + 5.0, "start")
                };
                let _ = writeln!(
                    o,
                    r##"<text x="{lx:.1}" y="{:.1}" font-size="11" fill="#333" text-anchor="{anchor}">{}</text>"##,
                    py - 6.0,
                    esc(l)
                );
            }
        }
    }

    fn legend(&mut self, items: &[(&str, &str)]) {
        for (i, (name, color)) in items.iter().enumerate() {
            // Above the plot, right-aligned with it, so it never hides a point.
            let y = 20.0 + 18.0 * i as f64;
            let x = W - RIGHT - 60.0;
            let _ = writeln!(
                self.out,
                r#"<line x1="{x}" y1="{y}" x2="{:.1}" y2="{y}" stroke="{color}" stroke-width="2"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                x + 24.0,
                x + 30.0,
                y + 4.0,
                esc(name)
            );
        }
    }

    fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes() {
        let a = Axis::linear(0.0, 7.3);
        assert_eq!(a.ticks, vec![0.0, 2.0, 4.0, 6.0, 8.0]);
        let l = Axis::latency([2.0, 1000.0].into_iter());
        assert!(l.log);
        assert_eq!(l.min, 1.0);
        assert_eq!(l.max, 1000.0);
        assert!(l.frac(1000.0) > 0.99);
        let z = Axis::latency(std::iter::empty());
        assert!(!z.log);
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(esc("a<b&\"c\""), "a&lt;b&amp;&quot;c&quot;");
    }
}
