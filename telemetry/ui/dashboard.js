// The dashboard's live part: each second it reads the server's own /metrics (Prometheus
// text), turns the counters' and histograms' changes into calls/s, p50/p99 and errors/s
// per row of the live table, writes them into it and feeds uPlot's charts (the charting
// library draws; this file only computes the figures), and sets each gauge cell to its
// series' current value. Which metrics and labels it reads comes from the page's body:
// data-requests and data-duration (the counter's and the histogram's families),
// data-key-labels (the labels joined with "/" name a row).
"use strict";

const KEEP = 120; // seconds of history shown
const SMOOTH = 5; // each figure is over the last SMOOTH seconds, as Prometheus' rate[5s]
const body = document.body.dataset;
const keyLabels = body.keyLabels.split(",");
const keyOf = labels => keyLabels.map(l => labels[l] || "").join("/");
const rows = [...document.querySelectorAll("table.live tr[data-key]")];
const keys = rows.map(r => r.dataset.key);
const times = [];
const series = { rate: {}, p50: {}, p99: {}, errors: {} };
for (const k of keys) for (const s in series) series[s][k] = [];
const recent = []; // the last SMOOTH + 1 samples

// Prometheus text: {name: [{labels, value}]}
function parse(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = line.match(/^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)$/);
    if (!m) continue;
    const labels = {};
    for (const l of (m[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2];
    (out[m[1]] = out[m[1]] || []).push({ labels, value: parseFloat(m[3]) });
  }
  return out;
}

// Per row: ok and failed calls, and the cumulative latency buckets [[le, count]].
function sample(p) {
  const s = {};
  for (const k of keys) s[k] = { ok: 0, failed: 0, buckets: [] };
  for (const r of p[body.requests + "_total"] || []) {
    const e = s[keyOf(r.labels)];
    if (e) r.labels.status === "OK" ? (e.ok += r.value) : (e.failed += r.value);
  }
  for (const r of p[body.duration + "_bucket"] || []) {
    const e = s[keyOf(r.labels)];
    if (e) e.buckets.push([r.labels.le === "+Inf" ? Infinity : parseFloat(r.labels.le), r.value]);
  }
  return s;
}

// The bound of the bucket holding quantile q of the calls between two samples (ms).
function quantile(now, before, q) {
  const d = now.map(([le, n], i) => [le, n - (before[i] ? before[i][1] : 0)]);
  const total = d.length ? d[d.length - 1][1] : 0;
  if (total <= 0) return null;
  for (const [le, n] of d) if (n >= q * total) return isFinite(le) ? le * 1000 : null;
  return null;
}

function chart(id, title, unit) {
  const el = document.getElementById(id);
  const opts = {
    title, width: 420, height: 220,
    scales: { x: { time: true } },
    series: [{}, ...keys.map((k, i) => ({ label: k, stroke: `hsl(${(i * 137) % 360},70%,40%)`, width: 2 }))],
    axes: [{}, { label: unit }],
  };
  return new uPlot(opts, [[], ...keys.map(() => [])], el);
}

const charts = keys.length ? {
  rate: chart("chart-rate", "calls/s", "calls/s"),
  latency: chart("chart-latency", "p99 latency", "ms"),
  errors: chart("chart-errors", "errors/s", "errors/s"),
} : null;

const fmt = (v, d) => (v === null || v === undefined ? "–" : v.toFixed(d));

// Each gauge cell: the series of its family carrying all its labels.
function gauges(p) {
  for (const cell of document.querySelectorAll("td[data-metric]")) {
    const want = JSON.parse(cell.dataset.labels);
    const found = (p[cell.dataset.metric] || []).find(r =>
      Object.entries(want).every(([k, v]) => r.labels[k] === v));
    const v = found ? found.value : null;
    cell.querySelector(".v").textContent = fmt(v, Number(cell.dataset.digits));
    const meter = cell.querySelector("meter");
    if (meter && v !== null) meter.value = v;
  }
}

async function tick() {
  let text;
  try {
    text = await (await fetch("/metrics", { cache: "no-store" })).text();
  } catch (e) {
    return;
  }
  const parsed = parse(text);
  gauges(parsed);
  const now = { t: Date.now() / 1000, s: sample(parsed) };
  const last = recent[0];
  recent.push(now);
  if (recent.length > SMOOTH + 1) recent.shift();
  if (!last) return;
  const dt = Math.max(now.t - last.t, 1e-3);
  times.push(now.t);
  keys.forEach((k, i) => {
    const a = now.s[k], b = last.s[k];
    const rate = Math.max(a.ok - b.ok, 0) / dt;
    const errors = Math.max(a.failed - b.failed, 0) / dt;
    const p50 = quantile(a.buckets, b.buckets, 0.5), p99 = quantile(a.buckets, b.buckets, 0.99);
    series.rate[k].push(rate); series.errors[k].push(errors);
    series.p50[k].push(p50); series.p99[k].push(p99);
    const row = rows[i];
    row.querySelector(".rate").textContent = fmt(rate, 1);
    row.querySelector(".errors").textContent = fmt(errors, 1);
    row.querySelector(".p50").textContent = fmt(p50, 2);
    row.querySelector(".p99").textContent = fmt(p99, 2);
  });
  if (times.length > KEEP) {
    times.shift();
    for (const s in series) for (const k of keys) series[s][k].shift();
  }
  if (charts) {
    charts.rate.setData([times, ...keys.map(k => series.rate[k])]);
    charts.latency.setData([times, ...keys.map(k => series.p99[k])]);
    charts.errors.setData([times, ...keys.map(k => series.errors[k])]);
  }
}

tick();
setInterval(tick, 1000);
