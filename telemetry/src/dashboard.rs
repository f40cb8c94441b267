//! The web dashboard's page, shared by the router and a standalone node: a [`Page`] of
//! tables the server fills at each load, rendered with minijinja (`ui/page.html`), and a
//! live part (`ui/dashboard.js`) that reads the server's own `/metrics` each second. It
//! computes calls/s, latency percentiles and errors/s per model into the live table's
//! rows and uPlot's charts (vendored in `ui/vendor/uplot/`), and keeps each [`Gauge`]
//! cell at its series' current value. Every file is compiled into the binary: the page
//! needs no network beyond the server.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;

const PAGE: &str = include_str!("../ui/page.html");
const SCRIPT: &str = include_str!("../ui/dashboard.js");
const UPLOT_JS: &str = include_str!("../ui/vendor/uplot/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../ui/vendor/uplot/uPlot.min.css");

/// Traced calls a dashboard lists.
pub const RECENT_TRACES: usize = 20;

/// Which metrics the live part reads, and which of their labels name a row of the live
/// table (joined with `/`, as [`Row::key`] is).
#[derive(Debug, Clone, Serialize)]
pub struct Live {
    /// The calls counter's family (its samples end in `_total`), with a `status` label
    /// (`OK` for a success).
    pub requests: &'static str,
    /// The call latency histogram's family, seconds.
    pub duration: &'static str,
    pub key_labels: &'static [&'static str],
}

/// One dashboard page.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    /// The browser tab's title and the page's heading.
    pub title: String,
    pub live: Live,
    pub tables: Vec<Table>,
    /// A line under the tables.
    pub note: String,
}

/// One table of the page.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    /// The element id.
    pub id: &'static str,
    pub title: &'static str,
    pub columns: Vec<&'static str>,
    pub rows: Vec<Row>,
    /// The live table: its rows get calls/s, p50, p99 and errors/s columns, and the
    /// charts follow it.
    pub live: bool,
    /// Shown with no rows (with this line in place of them); `None`: left out when empty.
    pub empty: Option<&'static str>,
}

impl Table {
    pub fn new(id: &'static str, title: &'static str, columns: Vec<&'static str>) -> Self {
        Self {
            id,
            title,
            columns,
            rows: Vec::new(),
            live: false,
            empty: None,
        }
    }

    /// The live table (see [`Table::live`]).
    pub fn live(mut self) -> Self {
        self.live = true;
        self
    }

    /// Shown even with no rows, saying `line`.
    pub fn or_empty(mut self, line: &'static str) -> Self {
        self.empty = Some(line);
        self
    }

    pub fn rows(mut self, rows: impl IntoIterator<Item = Row>) -> Self {
        self.rows.extend(rows);
        self
    }
}

/// One row; `key` names it for the live part.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Row {
    pub key: Option<String>,
    pub cells: Vec<Cell>,
}

impl Row {
    pub fn new(cells: impl IntoIterator<Item = Cell>) -> Self {
        Self {
            key: None,
            cells: cells.into_iter().collect(),
        }
    }

    pub fn keyed(key: String, cells: impl IntoIterator<Item = Cell>) -> Self {
        Self {
            key: Some(key),
            ..Self::new(cells)
        }
    }
}

/// One cell: text, or a link, or a gauge; `class` is the cell's CSS class.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cell {
    pub text: String,
    pub class: Option<String>,
    pub href: Option<String>,
    pub gauge: Option<Gauge>,
}

impl Cell {
    pub fn text(text: impl ToString) -> Self {
        Self {
            text: text.to_string(),
            ..Self::default()
        }
    }

    /// A number, aligned right.
    pub fn number(text: impl ToString) -> Self {
        Self::text(text).class("n")
    }

    pub fn link(text: impl ToString, href: String) -> Self {
        Self {
            href: Some(href),
            ..Self::text(text)
        }
    }

    pub fn class(mut self, class: impl ToString) -> Self {
        self.class = Some(class.to_string());
        self
    }

    /// A gauge cell, showing `value` now and followed live.
    pub fn gauge(gauge: Gauge, value: Option<f64>) -> Self {
        Self {
            text: value.map_or_else(|| "–".to_string(), |v| format!("{v:.*}", gauge.digits)),
            class: Some("n gauge".into()),
            href: None,
            gauge: Some(Gauge { value, ..gauge }),
        }
    }
}

/// A gauge: one series of the server's `/metrics` (the family and the labels it must
/// carry), drawn as a meter when it has a `max`.
#[derive(Debug, Clone, Serialize)]
pub struct Gauge {
    /// The sample name (a counter's ends in `_total`).
    pub metric: String,
    pub labels: BTreeMap<&'static str, String>,
    pub max: Option<f64>,
    /// Digits after the point.
    pub digits: usize,
    /// The value at the page's load.
    pub value: Option<f64>,
}

impl Gauge {
    /// A gauge family's series.
    pub fn new(family: &str, labels: &[(&'static str, &str)]) -> Self {
        Self {
            metric: family.to_string(),
            labels: labels.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            max: None,
            digits: 3,
            value: None,
        }
    }

    /// A counter family's series, whole numbers.
    pub fn counter(family: &str, labels: &[(&'static str, &str)]) -> Self {
        Self {
            metric: format!("{family}_total"),
            ..Self::new(family, labels)
        }
        .digits(0)
    }

    /// Drawn as a meter from 0 to `max`.
    pub fn meter(mut self, max: f64) -> Self {
        self.max = Some(max);
        self
    }

    pub fn digits(mut self, digits: usize) -> Self {
        self.digits = digits;
        self
    }
}

/// The last [`RECENT_TRACES`] traced calls of a server.
#[derive(Debug, Default)]
pub struct RecentTraces(Mutex<VecDeque<Trace>>);

/// One traced call.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub ms_since_epoch: u64,
    pub model: String,
    pub trace_id: String,
}

impl RecentTraces {
    /// Notes a traced call now.
    pub fn note(&self, model: &str, trace_id: &str) {
        let ms_since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if t.len() == RECENT_TRACES {
            t.pop_front();
        }
        t.push_back(Trace {
            ms_since_epoch,
            model: model.to_string(),
            trace_id: trace_id.to_string(),
        });
    }

    /// The traced calls, newest first.
    pub fn list(&self) -> Vec<Trace> {
        let t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        t.iter().rev().cloned().collect()
    }

    /// The recent traces table, each id linked as `trace_ui` followed by it.
    pub fn table(&self, trace_ui: Option<&str>) -> Table {
        Table::new("traces", "Recent traces", vec!["time", "model", "trace id"])
            .or_empty("no traced call yet")
            .rows(self.list().into_iter().map(|t| {
                let id = match trace_ui {
                    Some(ui) => Cell::link(&t.trace_id, format!("{ui}{}", t.trace_id)),
                    None => Cell::text(&t.trace_id),
                };
                Row::new([
                    Cell::text(format!(
                        "{}.{:03}",
                        t.ms_since_epoch / 1000,
                        t.ms_since_epoch % 1000
                    )),
                    Cell::text(t.model),
                    id,
                ])
            }))
    }
}

/// The page's HTML.
pub fn render(page: &Page) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.add_template("page.html", PAGE)?;
    env.get_template("page.html")?.render(page)
}

/// The routes: `/` (the page `page` builds at each load), `/ui/dashboard.js`,
/// `/ui/uPlot.iife.min.js`, `/ui/uPlot.min.css`.
pub fn routes<F>(page: F) -> axum::Router
where
    F: Fn() -> Page + Clone + Send + Sync + 'static,
{
    let asset = |body: &'static str, kind: &'static str| {
        get(move || async move { ([(header::CONTENT_TYPE, kind)], body) })
    };
    axum::Router::new()
        .route("/", get(move || async move { answer(&page()) }))
        .route("/ui/dashboard.js", asset(SCRIPT, "text/javascript"))
        .route("/ui/uPlot.iife.min.js", asset(UPLOT_JS, "text/javascript"))
        .route("/ui/uPlot.min.css", asset(UPLOT_CSS, "text/css"))
}

fn answer(page: &Page) -> Response {
    match render(page) {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "dashboard not rendered");
            (StatusCode::INTERNAL_SERVER_ERROR, format!("dashboard: {e}")).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(tables: Vec<Table>) -> Page {
        Page {
            title: "Troupe node <n1>".into(),
            live: Live {
                requests: "troupe_requests",
                duration: "troupe_request_duration_seconds",
                key_labels: &["model", "version"],
            },
            tables,
            note: "As of now.".into(),
        }
    }

    #[test]
    fn live_rows_carry_their_key_and_the_live_columns() {
        let models = Table::new("models", "Models", vec!["model"])
            .live()
            .rows([Row::keyed("m/1".into(), [Cell::text("m")])]);
        let html = render(&page(vec![models])).unwrap();
        // minijinja escapes `/` in attributes too; the browser reads `m/1`.
        assert!(
            html.contains("<tr data-key=\"m&#x2f;1\"><td>m</td>"),
            "{html}"
        );
        assert!(html.contains("class=\"n rate\""), "{html}");
        assert!(html.contains("id=\"chart-rate\""), "{html}");
        assert!(html.contains("data-key-labels=\"model,version\""), "{html}");
        assert!(html.contains("data-requests=\"troupe_requests\""), "{html}");
    }

    #[test]
    fn text_is_escaped_and_empty_tables_are_left_out_unless_told() {
        let shown = Table::new("a", "Shown", vec!["x"]).or_empty("nothing here");
        let hidden = Table::new("b", "Hidden", vec!["x"]);
        let evil = Table::new("c", "Evil", vec!["x"]).rows([Row::new([Cell::text("<script>")])]);
        let html = render(&page(vec![shown, hidden, evil])).unwrap();
        assert!(html.contains("Troupe node &lt;n1&gt;"), "{html}");
        assert!(
            html.contains("nothing here") && !html.contains("Hidden"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;") && !html.contains("<td><script>"));
    }

    #[test]
    fn a_gauge_names_its_series_and_draws_a_meter_with_a_max() {
        let g = Gauge::new(
            "troupe_quality_accuracy",
            &[("model", "d"), ("window", "calls")],
        )
        .meter(1.0);
        let t = Table::new("q", "Quality", vec!["accuracy"]).rows([Row::new([
            Cell::gauge(g.clone(), Some(0.875)),
            Cell::gauge(g.digits(1), None),
        ])]);
        let html = render(&page(vec![t])).unwrap();
        assert!(
            html.contains("data-metric=\"troupe_quality_accuracy\""),
            "{html}"
        );
        // The labels as JSON in a single-quoted attribute (minijinja's tojson escapes
        // what HTML would read).
        assert!(
            html.contains(r#"data-labels='{"model":"d","window":"calls"}'"#),
            "{html}"
        );
        assert!(
            html.contains("<meter min=\"0\" max=\"1.0\" value=\"0.875\">"),
            "{html}"
        );
        assert!(html.contains(">0.875<") && html.contains(">–<"), "{html}");
    }

    #[test]
    fn recent_traces_keep_the_last_ones_newest_first_and_link_them() {
        let r = RecentTraces::default();
        for i in 0..RECENT_TRACES + 5 {
            r.note("m", &format!("{i:032x}"));
        }
        let l = r.list();
        assert_eq!(l.len(), RECENT_TRACES);
        assert_eq!(l[0].trace_id, format!("{:032x}", RECENT_TRACES + 4));
        let t = r.table(Some("http://ui/trace/"));
        assert_eq!(
            t.rows[0].cells[2].href.as_deref(),
            Some(format!("http://ui/trace/{:032x}", RECENT_TRACES + 4).as_str())
        );
    }
}
