//! The human-readable summary of a [`Report`]: a table with one row per step (and per
//! model), then the errors and schedule notes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::format::trim_float;
use crate::report::Report;
use crate::stats::LatencySummary;

/// Milliseconds with about three significant digits.
fn ms(us: u64) -> String {
    let v = us as f64 / 1000.0;
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn errors_inline(errors: &BTreeMap<String, u64>) -> String {
    errors
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Left-aligned first column, right-aligned others.
fn render_rows(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            let w = widths.get(c).copied().unwrap_or(0);
            if c == 0 {
                let _ = write!(line, "{cell:<w$}");
            } else {
                let _ = write!(line, "  {cell:>w$}");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn row(
    label: String,
    sent: u64,
    answers: u64,
    errors: u64,
    tput: f64,
    l: &LatencySummary,
) -> Vec<String> {
    let lat = |v: u64| if l.count == 0 { "-".to_string() } else { ms(v) };
    vec![
        label,
        sent.to_string(),
        answers.to_string(),
        errors.to_string(),
        format!("{tput:.1}"),
        lat(l.p50_us),
        lat(l.p90_us),
        lat(l.p99_us),
        lat(l.p999_us),
        lat(l.max_us),
        if l.count == 0 {
            "-".into()
        } else {
            ms(l.mean_us.round() as u64)
        },
    ]
}

impl Report {
    /// The human-readable summary.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let models = self
            .models
            .iter()
            .map(|m| {
                let w = if self.models.len() > 1 {
                    format!(", weight {}", trim_float(m.weight))
                } else {
                    String::new()
                };
                let v = if m.version.is_empty() {
                    String::new()
                } else {
                    format!(" v{}", m.version)
                };
                format!("{}{v} ({}{w})", m.label, m.inputs.join("; "))
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(out, "target {} · {}", self.target, models);
        let mode = match self.steps.first().map(|s| s.mode.as_str()) {
            Some("open") => "open loop (latency from intended send times)",
            _ => "closed loop",
        };
        let warm = if self.warmup_s > 0.0 {
            format!(" after {}s warm-up", trim_float(self.warmup_s))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{mode} · {}{}{warm} · timeout {}s{}",
            self.stop,
            if self.sweep { " per step" } else { "" },
            trim_float(self.timeout_s),
            if self.interrupted {
                " · INTERRUPTED"
            } else {
                ""
            }
        );
        out.push('\n');

        let mut rows = vec![vec![
            "step".to_string(),
            "sent".into(),
            "answers".into(),
            "errors".into(),
            "answers/s".into(),
            "p50 ms".into(),
            "p90 ms".into(),
            "p99 ms".into(),
            "p99.9 ms".into(),
            "max ms".into(),
            "mean ms".into(),
        ]];
        for s in &self.steps {
            rows.push(row(
                s.label(),
                s.sent,
                s.answers,
                s.errors,
                s.throughput,
                &s.latency,
            ));
            if s.models.len() > 1 {
                for m in &s.models {
                    rows.push(row(
                        format!("  {}", m.label),
                        m.sent,
                        m.answers,
                        m.errors,
                        m.throughput,
                        &m.latency,
                    ));
                }
            }
        }
        out.push_str(&render_rows(&rows));

        for s in &self.steps {
            if !s.errors_by_code.is_empty() {
                let _ = writeln!(
                    out,
                    "errors at {}: {}",
                    s.label(),
                    errors_inline(&s.errors_by_code)
                );
                for (code, msg) in &s.error_messages {
                    let _ = writeln!(out, "  first {code}: {msg}");
                }
                if s.models.len() > 1 {
                    for m in s.models.iter().filter(|m| !m.errors_by_code.is_empty()) {
                        let _ =
                            writeln!(out, "  {}: {}", m.label, errors_inline(&m.errors_by_code));
                    }
                }
            }
            if let Some(lag) = s.max_schedule_lag_us.filter(|&l| l >= 50_000) {
                let _ = writeln!(
                    out,
                    "note: at {} the sender started up to {} ms behind schedule; the client may be the bottleneck",
                    s.label(),
                    ms(lag)
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(ms(2_714), "2.71");
        assert_eq!(ms(27_140), "27.1");
        assert_eq!(ms(271_400), "271");
        let t = render_rows(&[
            vec!["a".into(), "1".into()],
            vec!["bbb".into(), "22".into()],
        ]);
        assert_eq!(t, "a     1\nbbb  22\n");
    }
}
