// The dashboard's live part: each second it reads the router's own /metrics (Prometheus
// text), turns the counters' and histograms' changes into calls/s, p50/p99 and errors/s
// per model, writes them into the models table and feeds uPlot's charts (the charting
// library draws; this file only computes the figures).
"use strict";

const KEEP = 120; // seconds of history shown
const SMOOTH = 5; // each figure is over the last SMOOTH seconds, as Prometheus' rate[5s]
const models = [...document.querySelectorAll("#models tr[data-model]")].map(r => r.dataset.model);
const times = [];
const series = { rate: {}, p50: {}, p99: {}, errors: {} };
for (const m of models) for (const k in series) series[k][m] = [];
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

// Per model: ok and failed calls, and the cumulative latency buckets [[le, count]].
function sample(p) {
  const s = {};
  for (const m of models) s[m] = { ok: 0, failed: 0, buckets: [] };
  for (const r of p["troupe_router_requests_total"] || []) {
    const e = s[r.labels.model];
    if (e) r.labels.status === "OK" ? (e.ok += r.value) : (e.failed += r.value);
  }
  for (const r of p["troupe_router_request_duration_seconds_bucket"] || []) {
    const e = s[r.labels.model];
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
    series: [{}, ...models.map((m, i) => ({ label: m, stroke: `hsl(${(i * 137) % 360},70%,40%)`, width: 2 }))],
    axes: [{}, { label: unit }],
  };
  return new uPlot(opts, [[], ...models.map(() => [])], el);
}

const charts = models.length ? {
  rate: chart("chart-rate", "calls/s", "calls/s"),
  latency: chart("chart-latency", "p99 latency", "ms"),
  errors: chart("chart-errors", "errors/s", "errors/s"),
} : null;

const fmt = (v, d) => (v === null || v === undefined ? "–" : v.toFixed(d));

async function tick() {
  let text;
  try {
    text = await (await fetch("/metrics", { cache: "no-store" })).text();
  } catch (e) {
    return;
  }
  const now = { t: Date.now() / 1000, s: sample(parse(text)) };
  const last = recent[0];
  recent.push(now);
  if (recent.length > SMOOTH + 1) recent.shift();
  if (last) {
    const dt = Math.max(now.t - last.t, 1e-3);
    times.push(now.t);
    for (const m of models) {
      const a = now.s[m], b = last.s[m];
      const rate = Math.max(a.ok - b.ok, 0) / dt;
      const errors = Math.max(a.failed - b.failed, 0) / dt;
      const p50 = quantile(a.buckets, b.buckets, 0.5), p99 = quantile(a.buckets, b.buckets, 0.99);
      series.rate[m].push(rate); series.errors[m].push(errors);
      series.p50[m].push(p50); series.p99[m].push(p99);
      const row = document.querySelector(`#models tr[data-model="${CSS.escape(m)}"]`);
      row.querySelector(".rate").textContent = fmt(rate, 1);
      row.querySelector(".errors").textContent = fmt(errors, 1);
      row.querySelector(".p50").textContent = fmt(p50, 2);
      row.querySelector(".p99").textContent = fmt(p99, 2);
    }
    if (times.length > KEEP) {
      times.shift();
      for (const k in series) for (const m of models) series[k][m].shift();
    }
    if (charts) {
      charts.rate.setData([times, ...models.map(m => series.rate[m])]);
      charts.latency.setData([times, ...models.map(m => series.p99[m])]);
      charts.errors.setData([times, ...models.map(m => series.errors[m])]);
    }
  }
}

tick();
setInterval(tick, 1000);
