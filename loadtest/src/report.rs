//! What a run measured, and its renderings: a table, JSON, CSV (the SVG chart is in
//! [`crate::chart`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::inputs::ModelWorkload;

/// A whole run: one step, or one per sweep point.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The address under load.
    pub target: String,
    pub models: Vec<ModelInfo>,
    /// Warm-up before each step's measurement (its calls are not counted).
    pub warmup_s: f64,
    /// How each step ends: `"10s"` or `"1000 requests"`.
    pub stop: String,
    /// Deadline of each call.
    pub timeout_s: f64,
    /// Seed of the random inputs and model choice (`--seed` repeats a run's requests).
    pub seed: u64,
    pub sweep: bool,
    /// The run was stopped early (Ctrl-C); the last step is partial.
    pub interrupted: bool,
    pub steps: Vec<StepReport>,
}

/// A model of the run and what its requests carry.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub label: String,
    pub name: String,
    pub version: String,
    pub weight: f64,
    pub inputs: Vec<String>,
}

impl From<&ModelWorkload> for ModelInfo {
    fn from(m: &ModelWorkload) -> Self {
        Self {
            label: m.label.clone(),
            name: m.name.clone(),
            version: m.version.clone(),
            weight: m.weight,
            inputs: m.inputs.clone(),
        }
    }
}

/// One load level: a concurrency (closed loop) or a rate (open loop).
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// `"closed"` or `"open"`.
    pub mode: String,
    pub concurrency: Option<usize>,
    /// Requests per second asked for (open loop).
    pub rate: Option<f64>,
    /// Measured time: from the end of warm-up to the last answer.
    pub duration_s: f64,
    /// Requests sent (open loop: due) after warm-up. Always `answers + errors`.
    pub sent: u64,
    /// Successful answers.
    pub answers: u64,
    pub errors: u64,
    /// Errors by gRPC status code name (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, ...), plus
    /// `dropped` (open loop: over `--max-outstanding`) and `bad_response`.
    pub errors_by_code: BTreeMap<String, u64>,
    /// The first message seen for each error name.
    pub error_messages: BTreeMap<String, String>,
    /// Successful answers per second.
    pub throughput: f64,
    /// Latency of successful answers. Closed loop: from send to answer. Open loop: from
    /// the intended send time to the answer, so queueing in the client counts too.
    pub latency: LatencySummary,
    /// Open loop: the most a send started after its intended time.
    pub max_schedule_lag_us: Option<u64>,
    /// Per model (one entry when there is one model).
    pub models: Vec<ModelReport>,
    /// Per window of `window_s` seconds after warm-up, by completion time.
    pub window_s: f64,
    pub windows: Vec<WindowReport>,
    pub interrupted: bool,
}

impl StepReport {
    /// `concurrency 4` or `rate 100/s`.
    pub fn label(&self) -> String {
        match (self.concurrency, self.rate) {
            (Some(c), _) => format!("concurrency {c}"),
            (None, Some(r)) => format!("rate {}/s", trim_float(r)),
            _ => self.mode.clone(),
        }
    }

    /// `c=4` or `r=100`, for chart labels.
    pub fn short_label(&self) -> String {
        match (self.concurrency, self.rate) {
            (Some(c), _) => format!("c={c}"),
            (None, Some(r)) => format!("r={}", trim_float(r)),
            _ => self.mode.clone(),
        }
    }
}

/// One model's share of a step.
#[derive(Debug, Clone, Serialize)]
pub struct ModelReport {
    pub label: String,
    pub sent: u64,
    pub answers: u64,
    pub errors: u64,
    pub errors_by_code: BTreeMap<String, u64>,
    pub throughput: f64,
    pub latency: LatencySummary,
}

/// Latency percentiles in microseconds (zero when there was no answer).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

/// One time window of a step.
#[derive(Debug, Clone, Serialize)]
pub struct WindowReport {
    /// Seconds after warm-up.
    pub start_s: f64,
    pub answers: u64,
    pub errors: u64,
    pub throughput: f64,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    pub max_us: Option<u64>,
}

pub(crate) fn trim_float(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

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

fn ms_csv(us: u64) -> String {
    format!("{:.3}", us as f64 / 1000.0)
}

/// The columns of [`Report::to_csv`].
const CSV_HEADER: [&str; 16] = [
    "step",
    "mode",
    "concurrency",
    "rate",
    "duration_s",
    "sent",
    "answers",
    "errors",
    "throughput_rps",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p999_ms",
    "max_ms",
    "mean_ms",
    "errors_by_code",
];

/// One step as a CSV row: numbered from 1, latencies in ms, errors as `CODE=N;...`.
fn csv_row(number: usize, s: &StepReport) -> [String; 16] {
    let l = &s.latency;
    let errors = s
        .errors_by_code
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";");
    [
        number.to_string(),
        s.mode.clone(),
        s.concurrency.map(|c| c.to_string()).unwrap_or_default(),
        s.rate.map(trim_float).unwrap_or_default(),
        format!("{:.3}", s.duration_s),
        s.sent.to_string(),
        s.answers.to_string(),
        s.errors.to_string(),
        format!("{:.2}", s.throughput),
        ms_csv(l.p50_us),
        ms_csv(l.p90_us),
        ms_csv(l.p99_us),
        ms_csv(l.p999_us),
        ms_csv(l.max_us),
        format!("{:.3}", l.mean_us / 1000.0),
        errors,
    ]
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

    /// Pretty-printed JSON of the whole report.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report has only string keys and serializes")
    }

    /// CSV: a header and one row per step (totals over all models).
    pub fn to_csv(&self) -> String {
        let mut out = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(Vec::new());
        let rows = std::iter::once(CSV_HEADER.map(String::from)).chain(
            self.steps
                .iter()
                .enumerate()
                .map(|(i, s)| csv_row(i + 1, s)),
        );
        for row in rows {
            out.write_record(&row)
                .expect("writing CSV into memory cannot fail");
        }
        let bytes = out
            .into_inner()
            .expect("flushing CSV into memory cannot fail");
        String::from_utf8(bytes).expect("CSV of UTF-8 fields is UTF-8")
    }

    /// An SVG chart: latency over time for one step, the latency–throughput curve for a
    /// sweep.
    pub fn chart_svg(&self) -> String {
        crate::chart::render(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(trim_float(100.0), "100");
        assert_eq!(trim_float(2.5), "2.5");
        assert_eq!(ms(2_714), "2.71");
        assert_eq!(ms(27_140), "27.1");
        assert_eq!(ms(271_400), "271");
        let t = render_rows(&[
            vec!["a".into(), "1".into()],
            vec!["bbb".into(), "22".into()],
        ]);
        assert_eq!(t, "a     1\nbbb  22\n");
    }

    fn step(concurrency: Option<usize>, rate: Option<f64>, errors: &[(&str, u64)]) -> StepReport {
        StepReport {
            mode: if rate.is_some() { "open" } else { "closed" }.into(),
            concurrency,
            rate,
            duration_s: 2.0004,
            sent: 103,
            answers: 100,
            errors: errors.iter().map(|e| e.1).sum(),
            errors_by_code: errors.iter().map(|&(k, v)| (k.to_string(), v)).collect(),
            error_messages: BTreeMap::new(),
            throughput: 50.126,
            latency: LatencySummary {
                count: 100,
                min_us: 100,
                p50_us: 1_234,
                p90_us: 2_345,
                p99_us: 34_567,
                p999_us: 456_789,
                max_us: 1_135_780,
                mean_us: 1_500.25,
            },
            max_schedule_lag_us: None,
            models: Vec::new(),
            window_s: 1.0,
            windows: Vec::new(),
            interrupted: false,
        }
    }

    #[test]
    fn csv_has_one_row_per_step() {
        let mut report = Report {
            target: "t".into(),
            models: Vec::new(),
            warmup_s: 0.0,
            stop: "2s".into(),
            timeout_s: 30.0,
            seed: 1,
            sweep: true,
            interrupted: false,
            steps: Vec::new(),
        };
        let header = "step,mode,concurrency,rate,duration_s,sent,answers,errors,throughput_rps,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,mean_ms,errors_by_code\n";
        assert_eq!(report.to_csv(), header);
        report.steps = vec![
            step(Some(4), None, &[]),
            step(None, Some(100.5), &[("UNAVAILABLE", 2), ("dropped", 1)]),
        ];
        assert_eq!(
            report.to_csv(),
            format!(
                "{header}\
                 1,closed,4,,2.000,103,100,0,50.13,1.234,2.345,34.567,456.789,1135.780,1.500,\n\
                 2,open,,100.5,2.000,103,100,3,50.13,1.234,2.345,34.567,456.789,1135.780,1.500,UNAVAILABLE=2;dropped=1\n"
            )
        );
    }
}
