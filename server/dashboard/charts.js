// Small SVG charts for the usage dashboard: a line chart and a stacked bar
// chart over the report's time buckets. Every data mark is a <circle> or
// <rect> of class "pt" carrying data-series, data-time and data-value (the
// number it shows), with a <title> tooltip. Text goes in with textContent;
// colours are presentation attributes (the CSP forbids inline styles).
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 460, H = 190, L = 52, R = 10, T = 10, B = 24;
  const PALETTE = ["#2b59c3", "#d9730d", "#1b7f3b", "#b3261e", "#7b3fbf", "#0f8a8a", "#a15c00", "#c2185b", "#5f6b7a", "#6d8f00"];

  function el(name, attrs, parent) {
    const e = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (parent) parent.appendChild(e);
    return e;
  }
  function color(i) { return PALETTE[i % PALETTE.length]; }

  // niceMax rounds a maximum up to 1, 2 or 5 times a power of ten.
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function timeLabel(iso, interval) {
    const d = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    const hm = pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
    const md = (d.getUTCMonth() + 1) + "/" + d.getUTCDate();
    return interval === "day" ? md : interval === "hour" ? md + " " + hm : hm;
  }

  // frame draws the axes, grid and time labels, and returns the SVG and
  // the x and y scales.
  function frame(host, buckets, interval, max, fmt) {
    host.replaceChildren();
    const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, role: "img"}, host);
    const n = Math.max(buckets.length, 1);
    const step = (W - L - R) / n;
    const x = (i) => L + step * (i + 0.5);
    const y = (v) => T + (H - T - B) * (1 - v / max);
    for (let k = 0; k <= 4; k++) {
      const v = max * k / 4;
      el("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), class: k ? "gridline" : "axis"}, svg);
      const t = el("text", {x: L - 4, y: y(v) + 4, "text-anchor": "end"}, svg);
      t.textContent = fmt(v);
    }
    const every = Math.max(1, Math.ceil(buckets.length / 6));
    buckets.forEach((b, i) => {
      if (i % every) return;
      const t = el("text", {x: x(i), y: H - 6, "text-anchor": "middle"}, svg);
      t.textContent = timeLabel(b, interval);
    });
    return {svg, x, y, step};
  }

  function legend(host, names) {
    if (names.length < 2 && names[0] === "") return;
    const div = document.createElement("div");
    div.className = "legend";
    names.forEach((name, i) => {
      const s = document.createElement("span");
      const sw = el("svg", {viewBox: "0 0 10 10"}, s);
      el("rect", {width: 10, height: 10, fill: color(i)}, sw);
      s.append(name === "" ? "(none)" : name);
      div.appendChild(s);
    });
    host.appendChild(div);
  }

  function mark(node, series, time, value, text) {
    node.setAttribute("class", "pt");
    node.dataset.series = series;
    node.dataset.time = time;
    node.dataset.value = String(value);
    el("title", {}, node).textContent = text;
  }

  // line draws one line per series; a null value is a gap (no mark).
  // opts: {buckets, interval, series: [{name, values}], fmt, minMax}: a
  // count chart gives minMax 4, so that its ticks are whole numbers.
  // showEmpty replaces a chart with a note that the range has no requests.
  function showEmpty(host) {
    host.replaceChildren();
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = "no requests in this range";
    host.appendChild(p);
  }

  function line(host, opts) {
    const fmt = opts.fmt || String;
    let max = 0;
    for (const s of opts.series) for (const v of s.values) if (v != null) max = Math.max(max, v);
    if (!opts.series.some((s) => s.values.some((v) => v != null))) {
      showEmpty(host);
      return;
    }
    const {svg, x, y} = frame(host, opts.buckets, opts.interval, niceMax(Math.max(max, opts.minMax || 0)), fmt);
    opts.series.forEach((s, si) => {
      let d = "";
      s.values.forEach((v, i) => {
        if (v == null) { d += " "; return; }
        d += (d === "" || d.endsWith(" ") ? "M" : "L") + x(i).toFixed(1) + "," + y(v).toFixed(1);
      });
      el("path", {d: d.trim(), fill: "none", stroke: color(si), "stroke-width": 1.8}, svg);
      s.values.forEach((v, i) => {
        if (v == null) return;
        const c = el("circle", {cx: x(i), cy: y(v), r: 2.8, fill: color(si)}, svg);
        mark(c, s.name, opts.buckets[i], v, `${s.name || "all"} ${timeLabel(opts.buckets[i], opts.interval)}: ${fmt(v)}`);
      });
    });
    legend(host, opts.series.map((s) => s.name));
  }

  // bars stacks the series in each bucket; zero values draw nothing.
  function bars(host, opts) {
    const fmt = opts.fmt || String;
    const sums = opts.buckets.map((_, i) => opts.series.reduce((a, s) => a + (s.values[i] || 0), 0));
    const max = Math.max(0, ...sums);
    if (max === 0) {
      showEmpty(host);
      return;
    }
    const {svg, x, y, step} = frame(host, opts.buckets, opts.interval, niceMax(Math.max(max, opts.minMax || 0)), fmt);
    const w = Math.max(1, Math.min(step * 0.7, 28));
    opts.buckets.forEach((b, i) => {
      let base = 0;
      opts.series.forEach((s, si) => {
        const v = s.values[i] || 0;
        if (!v) return;
        const r = el("rect", {x: x(i) - w / 2, y: y(base + v), width: w, height: Math.max(0.5, y(base) - y(base + v)), fill: color(si)}, svg);
        mark(r, s.name, b, v, `${s.name} ${timeLabel(b, opts.interval)}: ${fmt(v)}`);
        base += v;
      });
    });
    legend(host, opts.series.map((s) => s.name));
  }

  return {line, bars};
})();
