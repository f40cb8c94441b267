//! A [`Report`] for other programs: JSON (everything) and CSV (one row per step).

use crate::format::trim_float;
use crate::report::{Report, StepReport};

impl Report {
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::stats::LatencySummary;

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
