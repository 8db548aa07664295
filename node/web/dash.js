// The swarmtrain dashboard: polls api/dash and draws plain SVG charts.
// Peer-supplied strings are only ever set as text, never as markup.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
let points = [], seq = 0, gen = null;

function $(id) { return document.getElementById(id); }

function fmt(x, digits) {
  if (x === undefined || x === null || !isFinite(x)) return "–";
  if (Math.abs(x) >= 1e4) return x.toExponential(2);
  return x.toFixed(digits);
}

function bytes(n) {
  const u = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : n) + " " + u[i];
}

function el(tag, attrs, parent) {
  const e = document.createElementNS(SVG, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}

// chart draws one or two series of [step, value] pairs into the figure id.
function chart(id, series) {
  const fig = $(id);
  const old = fig.querySelector("svg");
  if (old) old.remove();
  const W = 400, H = 160, L = 44, R = 8, T = 8, B = 18;
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
  let n = 0, x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (const s of series) for (const [x, y] of s) {
    n++;
    x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
  }
  svg.setAttribute("data-points", String(n));
  fig.appendChild(svg);
  el("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }, svg);
  el("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }, svg);
  if (n === 0) {
    el("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, svg).textContent = "no points yet";
    return;
  }
  if (y0 > 0 && y0 < y1 / 3) y0 = 0;
  if (x1 === x0) { x1 = x0 + 1; }
  if (y1 === y0) { y1 = y0 + (y0 === 0 ? 1 : Math.abs(y0) / 10); }
  const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R);
  const sy = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
  for (const [v, y] of [[y1, T + 8], [y0, H - B]]) {
    el("text", { x: L - 3, y: y, "text-anchor": "end" }, svg).textContent = fmt(v, v < 10 ? 3 : 1);
  }
  el("text", { x: L, y: H - 4 }, svg).textContent = "step " + x0;
  el("text", { x: W - R, y: H - 4, "text-anchor": "end" }, svg).textContent = "step " + x1;
  series.forEach((s, i) => {
    if (!s.length) return;
    el("polyline", { class: "s" + i, points: s.map(([x, y]) => sx(x).toFixed(1) + "," + sy(y).toFixed(1)).join(" ") }, svg);
    if (s.length <= 60) for (const [x, y] of s) el("circle", { class: "s" + i, cx: sx(x).toFixed(1), cy: sy(y).toFixed(1), r: 2 }, svg);
  });
}

function render(d) {
  const s = d.status;
  $("run").textContent = "run " + s.run.slice(0, 12) + " · peer " + s.peer.slice(-8);
  $("phase").textContent = s.phase;
  $("step").textContent = s.step + " / " + s.steps;
  $("rate").textContent = fmt(s.samples_per_sec, 0);
  $("loss").textContent = fmt(s.loss, 4);
  const withAcc = points.filter(p => p.acc !== undefined);
  $("acc").textContent = withAcc.length ? (100 * withAcc[withAcc.length - 1].acc).toFixed(1) + " %" : "–";
  $("peers").textContent = s.live_peers;
  $("rounds").textContent = s.rounds;
  $("failed").textContent = s.failed_rounds;
  $("syncs").textContent = s.state_syncs;
  $("bytes").textContent = bytes(s.bytes_in) + " / " + bytes(s.bytes_out);

  chart("chart-loss", [points.map(p => [p.step, p.loss])]);
  chart("chart-acc", [withAcc.map(p => [p.step, p.acc])]);
  chart("chart-rate", [points.map(p => [p.step, p.samples_per_sec])]);
  chart("chart-round", [points.filter(p => p.round_seconds > 0).map(p => [p.step, p.round_seconds]), points.map(p => [p.step, p.failed])]);
  chart("chart-bytes", [points.map(p => [p.step, p.bytes_in / 1e6]), points.map(p => [p.step, p.bytes_out / 1e6])]);

  const body = $("swarm").querySelector("tbody");
  body.replaceChildren();
  for (const p of d.peers) {
    const tr = document.createElement("tr");
    tr.dataset.peer = p.peer;
    if (p.self) tr.className = "self";
    const cells = [
      [p.peer, "peer"], [p.device, "device"], [p.step, "num"], [fmt(p.loss, 4), "num"], [fmt(p.samples_per_sec, 0), "num"],
      [p.reachability], [p.mode + (p.syncing ? " (syncing)" : "")], [p.path],
      [p.self ? "–" : fmt(p.last_seen_seconds, 1) + " s ago", "num"], [bytes(p.bytes_in), "num"], [bytes(p.bytes_out), "num"],
    ];
    for (const [text, cls] of cells) {
      const td = document.createElement("td");
      td.textContent = text;
      td.title = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

async function poll() {
  try {
    const q = gen === null ? "" : `?after=${seq}&gen=${gen}`;
    const r = await fetch("api/dash" + q, { cache: "no-store" });
    if (!r.ok) throw new Error(r.status + " " + r.statusText);
    const d = await r.json();
    const fresh = Array.isArray(d.history) ? d.history : [];
    points = d.reset ? fresh : points.concat(fresh);
    seq = d.seq; gen = d.gen;
    render(d);
    $("conn").textContent = "";
    $("conn").className = "conn";
  } catch (e) {
    $("conn").textContent = "update failed: " + e.message;
    $("conn").className = "conn down";
  }
  setTimeout(poll, 2000);
}

poll();
