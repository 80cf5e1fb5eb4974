"use strict";
(function () {
  const D = JSON.parse(document.getElementById("wiring-data").textContent);
  const ST = D.style;
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- decoding
  function bytes(b64) {
    const bin = atob(b64), out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  class Reader {
    constructor(buf) { this.b = buf; this.p = 0; }
    varint() {
      let v = 0, mul = 1, b;
      do { b = this.b[this.p++]; v += (b & 127) * mul; mul *= 128; } while (b & 128);
      return v;
    }
    ids(n) {
      const out = new Int32Array(n); let prev = -1;
      for (let i = 0; i < n; i++) { prev += this.varint() + 1; out[i] = prev; }
      return out;
    }
    int8(n) {
      const out = new Int8Array(n);
      for (let i = 0; i < n; i++) { const b = this.b[this.p++]; out[i] = b > 127 ? b - 256 : b; }
      return out;
    }
  }
  function nodeArray(b64, width) {
    const raw = bytes(b64), dv = new DataView(raw.buffer), n = raw.length / width, out = new Int32Array(n);
    for (let i = 0; i < n; i++) out[i] = width === 2 ? dv.getUint16(2 * i, true) : dv.getUint32(4 * i, true);
    return out;
  }

  const N = D.nodes.count, U = D.edges.count, S = D.frames.count;
  const dynamic = D.nodes.dynamic;
  const NX = Float64Array.from(D.nodes.x), NY = Float64Array.from(D.nodes.y);
  const level = Int32Array.from(D.nodes.level), role = Int32Array.from(D.nodes.role);
  const SRC = nodeArray(D.edges.src, D.edges.width), DST = nodeArray(D.edges.dst, D.edges.width);
  const CAND = new Reader(bytes(D.edges.cand)).ids(U);
  const steps = D.frames.steps, epochs = D.frames.epochs;  // epochs: the epoch each frame's step lies in
  const QS = D.weights.scale / D.weights.levels;

  const blob = bytes(D.frames.blob), offsets = D.frames.offsets;
  const diffs = [];
  for (let f = 0; f < S; f++) {
    const r = new Reader(blob.subarray(offsets[f], offsets[f + 1]));
    const nA = r.varint(), A = r.ids(nA), qA = r.int8(nA);
    const R = r.ids(r.varint());
    const nC = r.varint(), C = r.ids(nC), qC = r.int8(nC);
    diffs.push({ A, qA, R, C, qC });
  }

  // ---------------------------------------------------------------- state: replay with checkpoints
  const real = new Uint8Array(U), q = new Int8Array(U), since = new Int32Array(U);
  function apply(f) {
    const d = diffs[f];
    for (let i = 0; i < d.R.length; i++) real[d.R[i]] = 0;
    for (let i = 0; i < d.A.length; i++) { const e = d.A[i]; real[e] = 1; q[e] = d.qA[i]; since[e] = f; }
    for (let i = 0; i < d.C.length; i++) q[d.C[i]] = d.qC[i];
  }
  const K = 16, checkpoints = [];
  for (let f = 0; f < S; f++) {
    apply(f);
    if (f % K === 0) checkpoints.push({ real: real.slice(), q: q.slice(), since: since.slice() });
  }
  let cur = S - 1;  // the state above is that of the last frame
  function seek(f) {
    if (f === cur) return;
    if (f === cur + 1) { apply(f); cur = f; return; }
    const c = checkpoints[Math.floor(f / K)];
    real.set(c.real); q.set(c.q); since.set(c.since);
    for (let g = Math.floor(f / K) * K + 1; g <= f; g++) apply(g);
    cur = f;
  }
  let realList = new Int32Array(0);
  function collectReal() {
    let k = 0;
    for (let e = 0; e < U; e++) k += real[e];
    const out = new Int32Array(k); let j = 0;
    for (let e = 0; e < U; e++) if (real[e]) out[j++] = e;
    realList = out;
  }

  // ---------------------------------------------------------------- per-frame statistics
  function deadNodes() {
    const outdeg = new Int32Array(N + 1), indeg = new Int32Array(N + 1);
    for (const e of realList) { outdeg[SRC[e] + 1]++; indeg[DST[e] + 1]++; }
    for (let i = 0; i < N; i++) { outdeg[i + 1] += outdeg[i]; indeg[i + 1] += indeg[i]; }
    const succ = new Int32Array(realList.length), pred = new Int32Array(realList.length);
    const fo = outdeg.slice(), fi = indeg.slice();
    for (const e of realList) { succ[fo[SRC[e]]++] = DST[e]; pred[fi[DST[e]]++] = SRC[e]; }
    function reach(start, ptr, adj) {
      const seen = new Uint8Array(N), stack = [];
      for (let i = 0; i < N; i++) if (role[i] === start) { seen[i] = 1; stack.push(i); }
      while (stack.length) {
        const v = stack.pop();
        for (let j = ptr[v]; j < ptr[v + 1]; j++) { const w = adj[j]; if (!seen[w]) { seen[w] = 1; stack.push(w); } }
      }
      return seen;
    }
    const fromIn = reach(0, outdeg, succ), toOut = reach(2, indeg, pred);
    const dead = new Uint8Array(N); let count = 0;
    for (let i = 0; i < N; i++) if (!(fromIn[i] && toOut[i])) { dead[i] = 1; count++; }
    return { dead, count, indeg, outdeg };
  }
  let frameInfo = null;
  function metricsAt(step) {
    if (step === null || step === undefined) return null;
    let best = null;
    for (const m of D.metrics) if (m.step <= step) best = m;
    return best;
  }

  // ---------------------------------------------------------------- geometry
  const stage = $("stage"), cEdges = $("edges"), cOver = $("overlay");
  const ctx = cEdges.getContext("2d"), octx = cOver.getContext("2d");
  let W = 0, H = 0, dpr = 1, view = null;
  const geo = new Float32Array(6 * U);  // screen (ax, ay, cx, cy, bx, by) per edge
  let nodeSX = new Float32Array(N), nodeSY = new Float32Array(N);
  let grid = null;
  const cols = [];
  for (const c of D.nodes.columns) cols.push(c[0]);
  const cmin = cols.reduce((a, b) => Math.min(a, b), cols.length ? Infinity : 0);
  const cmax = cols.reduce((a, b) => Math.max(a, b), cols.length ? -Infinity : 1);

  function layoutView() {
    const pad = 14;
    if (dynamic) {  // wiring.picture.node_positions: inputs | a circle of hidden nodes | outputs, one scale
      let x0 = Infinity, x1 = -Infinity;
      for (let i = 0; i < N; i++) { x0 = Math.min(x0, NX[i]); x1 = Math.max(x1, NX[i]); }
      if (!(x1 >= x0)) x0 = x1 = ST.ring_centre[0];
      x0 -= 0.12; x1 += 0.12;
      const y0 = -0.1, y1 = 1.16;   // as viz.render: room above for the group labels
      const s = Math.min((W - 2 * pad) / (x1 - x0), (H - 2 * pad) / (y1 - y0));
      const ox = (W - (x1 - x0) * s) / 2, oy = (H - (y1 - y0) * s) / 2;
      return { sx: (x) => ox + (x - x0) * s, sy: (y) => oy + (y1 - y) * s, unit: s, labelY: 1.06 };
    }
    const x0 = cmin - 0.25, x1 = cmax + 0.25;
    const top = 1 + ST.arc_height * Math.max(cmax - cmin - 1, 0) / 2;
    const labelY = 1 + 0.5 * (top - 1) + 0.03;
    const y0 = -(top - 1) - 0.02, y1 = labelY + 0.06;
    const kx = (W - 2 * pad) / (x1 - x0), ky = (H - 2 * pad) / (y1 - y0);
    return { sx: (x) => pad + (x - x0) * kx, sy: (y) => pad + (y1 - y) * ky, unit: Math.min(kx, ky), labelY };
  }
  function computeGeometry() {
    view = layoutView();
    for (let i = 0; i < N; i++) { nodeSX[i] = view.sx(NX[i]); nodeSY[i] = view.sy(NY[i]); }
    for (let e = 0; e < U; e++) {
      const a = SRC[e], b = DST[e];
      const ax = NX[a], ay = NY[a], bx = NX[b], by = NY[b];
      let cx = (ax + bx) / 2, cy = (ay + by) / 2;
      if (dynamic) { cx += ST.chord_bend * (by - ay); cy += ST.chord_bend * (ax - bx); }
      else {
        const skip = Math.max(Math.abs(bx - ax) - 1, 0), sign = (a + b) % 2 === 0 ? 1 : -1;
        cy += ST.arc_height * skip * sign;
      }
      geo.set([view.sx(ax), view.sy(ay), view.sx(cx), view.sy(cy), view.sx(bx), view.sy(by)], 6 * e);
    }
    grid = null;
  }
  function loopCircle(e) {  // [cx, cy, r] on screen
    const n = SRC[e];
    let ox = NX[n] - ST.ring_centre[0], oy = NY[n] - ST.ring_centre[1]; const len = Math.max(Math.hypot(ox, oy), 1e-9);
    ox /= len; oy /= len;
    const r = ST.loop_radius;
    return [view.sx(NX[n] + r * ox), view.sy(NY[n] + r * oy), r * view.unit];
  }
  function tracePath(c, e) {
    const g = 6 * e;
    if (SRC[e] === DST[e]) {
      const [x, y, r] = loopCircle(e);
      c.moveTo(x + r, y); c.arc(x, y, r, 0, 2 * Math.PI);
    } else {
      c.moveTo(geo[g], geo[g + 1]); c.quadraticCurveTo(geo[g + 2], geo[g + 3], geo[g + 4], geo[g + 5]);
    }
  }
  function curvePoints(e, n) {
    const pts = [];
    if (SRC[e] === DST[e]) {
      const [x, y, r] = loopCircle(e);
      for (let i = 0; i <= n; i++) { const t = 2 * Math.PI * i / n; pts.push([x + r * Math.cos(t), y + r * Math.sin(t)]); }
      return pts;
    }
    const g = 6 * e;
    for (let i = 0; i <= n; i++) {
      const t = i / n, u = 1 - t;
      pts.push([u * u * geo[g] + 2 * u * t * geo[g + 2] + t * t * geo[g + 4],
                u * u * geo[g + 1] + 2 * u * t * geo[g + 3] + t * t * geo[g + 5]]);
    }
    return pts;
  }

  // ---------------------------------------------------------------- drawing
  const PT = 96 / 72;  // CSS pixels per point
  const NB = 12;       // opacity / width buckets per sign
  function hexRgb(hex) { const v = parseInt(hex.slice(1), 16); return [(v >> 16) & 255, (v >> 8) & 255, v & 255]; }
  function rgba(hex, a) { const [r, g, b] = hexRgb(hex); return `rgba(${r},${g},${b},${a.toFixed(3)})`; }
  function edgeParams(n) {
    n = Math.max(n, 1); const s = Math.sqrt(n), clip = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
    const wMax = clip(60 / s, 0.5, 3.5);
    return [clip(2 / s, 0.012, 0.35), clip(20 / s, 0.13, 0.95), 0.3 * wMax, wMax];
  }
  function crowding(n) { return Math.max(n, 1) * ST.ref_pixels / Math.max(W * H, 1); }
  const kMax = D.frames.k.reduce((a, b) => Math.max(a, b), 1);
  let params = edgeParams(kMax);
  function strength(e) {
    const lo = D.weights.lo, hi = D.weights.hi, w = Math.abs(q[e] * QS);
    return hi - lo > 1e-12 * Math.max(Math.abs(hi), 1) ? Math.min(Math.max((w - lo) / (hi - lo), 0), 1) : 1;
  }
  // ranked style (viz.render / wiring.picture): from ST.ranked_from edges, opacity and width come from the
  // rank of |w| in the frame: emphasis 1 / (1 + (rank / strong)^4), the ST.strong strongest stand out
  const ranked = kMax >= ST.ranked_from;
  function rankedParams(n) {  // wiring.picture.ranked_params
    n = Math.max(n, 1); const clip = (v, lo, hi) => Math.min(Math.max(v, lo), hi);
    return [clip(100 / n, 0.008, 0.25), 0.85, clip(2000 / n, 0.15, 0.6), 0.9];
  }
  let emphasis = new Float32Array(0);
  function rankFrame() {  // emphasis of each edge of realList, by the rank of |q| (ties: lower edge id first)
    const idx = Array.from(realList.keys());
    idx.sort((a, b) => (Math.abs(q[realList[b]]) - Math.abs(q[realList[a]])) || (realList[a] - realList[b]));
    emphasis = new Float32Array(realList.length);
    for (let r = 0; r < idx.length; r++) emphasis[idx[r]] = 1 / (1 + Math.pow(r / ST.strong, 4));
  }
  let showChanges = true;
  function drawEdges() {
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, W, H);
    ctx.lineCap = "round";
    params = ranked ? rankedParams(crowding(kMax)) : edgeParams(crowding(kMax));
    const [aMin, aMax, wMin, wMax] = ranked ? [params[0], params[1], params[2], params[3]] : params;
    if (ranked) rankFrame();
    // column labels (dynamic: the role groups, at their x)
    ctx.fillStyle = "#333"; ctx.font = "12px system-ui, sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "bottom";
    for (const [c, label] of D.nodes.columns) ctx.fillText(label, view.sx(c), view.sy(view.labelY) + 2);
    // edges in 2 x NB buckets, weakest first
    const bucket = new Int32Array(2 * NB + 1), bOf = new Int32Array(realList.length);
    for (let i = 0; i < realList.length; i++) {
      const e = realList[i], s = ranked ? emphasis[i] : strength(e);
      const b = Math.min(NB - 1, Math.floor(s * NB)) * 2 + (q[e] < 0 ? 1 : 0);
      bOf[i] = b; bucket[b + 1]++;
    }
    for (let b = 0; b < 2 * NB; b++) bucket[b + 1] += bucket[b];
    const order = new Int32Array(realList.length), fill = bucket.slice();
    for (let i = 0; i < realList.length; i++) order[fill[bOf[i]]++] = realList[i];
    const [arrowOn, arrowCount] = dynamic ? arrowEdges() : [null, 0];
    const crowd = Math.min(Math.max(Math.sqrt(60 / Math.max(arrowCount, 1)), 0.55), 1);  // many: smaller heads
    for (let b = 0; b < 2 * NB; b++) {
      if (bucket[b] === bucket[b + 1]) continue;
      const s = (Math.floor(b / 2) + 0.5) / NB, colour = b % 2 ? ST.negative : ST.positive;
      ctx.strokeStyle = rgba(colour, aMin + (aMax - aMin) * s);
      ctx.lineWidth = (wMin + (wMax - wMin) * s) * PT;
      ctx.beginPath();
      for (let j = bucket[b]; j < bucket[b + 1]; j++) tracePath(ctx, order[j]);
      ctx.stroke();
      if (arrowOn) {
        ctx.fillStyle = rgba(colour, aMin + (aMax - aMin) * s);
        ctx.beginPath();
        for (let j = bucket[b]; j < bucket[b + 1]; j++)
          if (arrowOn[order[j]]) arrowHead(ctx, order[j], crowd * (0.6 + 0.4 * (wMin + (wMax - wMin) * s) / wMax));
        ctx.fill();
      }
    }
    if (showChanges && cur > 0) {
      const d = diffs[cur];
      let wRem = Math.min(Math.max(0.8, 0.9 * wMax), 1.6), wAdd = Math.min(Math.max(0.9, 1.3 * wMax), 2.2);
      let aRem = 0.55, aAdd = 0.85;
      if (ranked) {  // thin highlights (viz.animate): many swaps fainter, a few wide enough to find
        const swaps = Math.max(d.A.length + d.R.length, 1), fade = Math.min(Math.max(Math.sqrt(200 / swaps), 0.25), 1);
        wAdd = Math.min(Math.max(1.5 * Math.sqrt(50 / swaps), 0.5), 1.5); wRem = 0.9 * wAdd;
        aAdd = 0.9 * fade; aRem = 0.7 * fade;
      }
      ctx.setLineDash([3 * PT * wRem, 2 * PT * wRem]);
      ctx.strokeStyle = rgba(ST.removed, aRem); ctx.lineWidth = wRem * PT;
      ctx.beginPath(); for (const e of d.R) tracePath(ctx, e); ctx.stroke();
      ctx.setLineDash([]);
      ctx.strokeStyle = rgba(ST.added, aAdd); ctx.lineWidth = wAdd * PT;
      ctx.beginPath(); for (const e of d.A) tracePath(ctx, e); ctx.stroke();
    }
    drawNodes(ctx);
  }
  // the edges with an arrowhead: the strongest, as viz.render's WiringDrawing.arrow_count says
  const ARROWS = ranked ? Math.min(ST.strong, ST.arrow_max_edges) : ST.arrow_max_edges;
  function arrowEdges() {
    const on = new Uint8Array(U);
    if (realList.length <= ARROWS) { for (const e of realList) on[e] = 1; return [on, realList.length]; }
    const idx = Array.from(realList.keys()), key = ranked ? (i) => emphasis[i] : (i) => strength(realList[i]);
    idx.sort((a, b) => (key(b) - key(a)) || (realList[a] - realList[b]));
    for (let r = 0; r < ARROWS; r++) on[realList[idx[r]]] = 1;
    return [on, ARROWS];
  }
  function arrowHead(c, e, rel) {
    if (SRC[e] === DST[e]) return;
    const g = 6 * e, t = ST.arrow_at, u = 1 - t;
    const tx = u * u * geo[g] + 2 * u * t * geo[g + 2] + t * t * geo[g + 4];
    const ty = u * u * geo[g + 1] + 2 * u * t * geo[g + 3] + t * t * geo[g + 5];
    let dx = 2 * u * (geo[g + 2] - geo[g]) + 2 * t * (geo[g + 4] - geo[g + 2]);
    let dy = 2 * u * (geo[g + 3] - geo[g + 1]) + 2 * t * (geo[g + 5] - geo[g + 3]);
    const len = Math.max(Math.hypot(dx, dy), 1e-9); dx /= len; dy /= len;
    const size = ST.arrow_size * view.unit * rel, bx = tx - dx * size, by = ty - dy * size;
    c.moveTo(tx, ty); c.lineTo(bx - dy * size / 2, by + dx * size / 2); c.lineTo(bx + dy * size / 2, by - dx * size / 2);
    c.closePath();
  }
  const markerSide = Math.sqrt(Math.min(Math.max(4000 / Math.max(N, 1), 5), 260)) * PT;
  function nodeShape(c, i, grow) {
    const x = nodeSX[i], y = nodeSY[i], h = markerSide / 2 + (grow || 0);
    const marker = ST.roles[role[i]] ? ST.roles[role[i]][1] : "o";
    if (marker === "s") c.rect(x - h, y - h, 2 * h, 2 * h);
    else if (marker === "D") { const d = h * 1.25; c.moveTo(x, y - d); c.lineTo(x + d, y); c.lineTo(x, y + d); c.lineTo(x - d, y); c.closePath(); }
    else { c.moveTo(x + h, y); c.arc(x, y, h, 0, 2 * Math.PI); }
  }
  function drawNodes(c) {
    const dead = frameInfo.dead;
    c.lineWidth = N <= 40 ? 1.2 * PT : 0.5 * PT;
    for (const code of Object.keys(ST.roles)) {
      const colour = ST.roles[code][2];
      for (const isDead of [0, 1]) {
        c.beginPath(); let any = false;
        for (let i = 0; i < N; i++) if (role[i] === +code && dead[i] === isDead) { nodeShape(c, i); any = true; }
        if (!any) continue;
        c.fillStyle = isDead ? ST.dead_face : colour; c.strokeStyle = isDead ? ST.dead_edge : colour;
        c.fill(); c.stroke();
      }
    }
    if (N > 40) {  // viz.render: a dark dash across the column at each dead node of a large wiring
      c.beginPath();
      const half = (dynamic ? 8 : 12) * PT / 2;
      for (let i = 0; i < N; i++) if (dead[i]) { c.moveTo(nodeSX[i] - half, nodeSY[i]); c.lineTo(nodeSX[i] + half, nodeSY[i]); }
      c.strokeStyle = ST.dead_mark; c.lineWidth = 1.3 * PT; c.stroke();
    }
    if (N <= 40) {
      c.fillStyle = "#222"; c.font = "11px system-ui, sans-serif"; c.textAlign = "left"; c.textBaseline = "bottom";
      for (let i = 0; i < N; i++) c.fillText(String(i), nodeSX[i] + 6, nodeSY[i] - 4);
    }
  }

  // ---------------------------------------------------------------- hit testing
  const CELL = 12;
  function buildGrid() {
    const gw = Math.ceil(W / CELL) + 1, gh = Math.ceil(H / CELL) + 1;
    const lists = new Map();
    const stamp = new Int32Array(gw * gh).fill(-1);
    for (let e = 0; e < U; e++) {
      const pts = curvePoints(e, 12);
      for (let i = 0; i + 1 < pts.length; i++) {
        const [x0, y0] = pts[i], [x1, y1] = pts[i + 1];
        const n = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0) / (CELL / 2)));
        for (let j = 0; j <= n; j++) {
          const x = x0 + (x1 - x0) * j / n, y = y0 + (y1 - y0) * j / n;
          const gx = Math.floor(x / CELL), gy = Math.floor(y / CELL);
          if (gx < 0 || gy < 0 || gx >= gw || gy >= gh) continue;
          const cell = gy * gw + gx;
          if (stamp[cell] === e) continue;
          stamp[cell] = e;
          let l = lists.get(cell); if (!l) { l = []; lists.set(cell, l); } l.push(e);
        }
      }
    }
    grid = { gw, gh, lists };
  }
  function segDist(px, py, x0, y0, x1, y1) {
    const dx = x1 - x0, dy = y1 - y0, l2 = dx * dx + dy * dy;
    const t = l2 > 0 ? Math.min(Math.max(((px - x0) * dx + (py - y0) * dy) / l2, 0), 1) : 0;
    return Math.hypot(px - x0 - t * dx, py - y0 - t * dy);
  }
  const MAX_CANDIDATES = 4000;
  function pick(px, py) {
    // nodes by distance
    let best = -1, bestD = Math.max(markerSide / 2 + 3, 6);
    for (let i = 0; i < N; i++) {
      const d = Math.hypot(nodeSX[i] - px, nodeSY[i] - py);
      if (d <= bestD) { bestD = d; best = i; }
    }
    if (best >= 0) return { kind: "node", id: best };
    // edges: the grid cells around the cursor, at most MAX_CANDIDATES edges
    if (!grid) buildGrid();
    const removed = showChanges && cur > 0 ? new Set(diffs[cur].R) : null;
    const gx = Math.floor(px / CELL), gy = Math.floor(py / CELL), seen = new Set();
    let edge = -1, edgeD = 6, looked = 0;
    for (let dy = -1; dy <= 1 && looked < MAX_CANDIDATES; dy++) for (let dx = -1; dx <= 1 && looked < MAX_CANDIDATES; dx++) {
      const x = gx + dx, y = gy + dy;
      if (x < 0 || y < 0 || x >= grid.gw || y >= grid.gh) continue;
      const l = grid.lists.get(y * grid.gw + x); if (!l) continue;
      for (const e of l) {
        if (seen.has(e) || !(real[e] || (removed && removed.has(e)))) continue;
        seen.add(e);
        if (++looked > MAX_CANDIDATES) break;
        const pts = curvePoints(e, 16);
        for (let i = 0; i + 1 < pts.length; i++) {
          const d = segDist(px, py, pts[i][0], pts[i][1], pts[i + 1][0], pts[i + 1][1]);
          if (d < edgeD || (d === edgeD && real[e] && !real[edge])) { edgeD = d; edge = e; }
        }
      }
    }
    return edge >= 0 ? { kind: "edge", id: edge } : null;
  }

  // ---------------------------------------------------------------- hover
  let hovered = null;
  const fmtStep = (s) => (s === null || s === undefined ? "n/a" : s.toLocaleString("en-US"));
  // a static wiring's levels are named as in every picture, by the names the payload carries
  // (wiring.picture.level_name: "inputs", "level N", "outputs"; short "in", "N", "out" in the level table)
  const COL = Int32Array.from(D.nodes.column || []);
  const COLNAME = new Map((D.nodes.column_names || []).map(([c, name]) => [c, name]));
  const COLSHORT = new Map((D.nodes.column_names || []).map(([c, , short]) => [c, short]));
  const colName = (i) => (COL.length ? COLNAME.get(COL[i]) : "");
  function levelName(i) {
    const r = ST.role_names[role[i]] || "node";
    return COL.length ? `${colName(i)} (${r})` : r;   // dynamic: one level, the node's role names it
  }
  function describe(h) {
    if (!h) return "";
    if (h.kind === "node") {
      const i = h.id, info = frameInfo;
      const inD = info.indeg[i + 1] - info.indeg[i], outD = info.outdeg[i + 1] - info.outdeg[i];
      return `node ${i}\n${levelName(i)}\nin ${inD} · out ${outD} real edges\n` +
             (info.dead[i] ? "dead: on no input→output path" : "live");
    }
    const e = h.id, w = q[e] * QS, sign = w >= 0 ? "+" : "−";
    const first = since[e];
    let when;
    if (!real[e]) when = `removed in this frame (was real since step ${fmtStep(steps[first])})`;
    else if (S === 1) when = steps[0] === null ? "appeared: n/a (single frame)" : `real at step ${fmtStep(steps[0])} (single frame)`;
    else if (first === 0) when = `real since step ${fmtStep(steps[0])} (the first snapshot)`;
    else when = `appeared at step ${fmtStep(steps[first])} (frame ${first + 1})` + (first === cur ? " ← new" : "");
    return `edge ${CAND[e].toLocaleString("en-US")}: node ${SRC[e]} → node ${DST[e]}\n` +
           (COL.length ? `${colName(SRC[e])} → ${colName(DST[e])}\n` : `${levelName(SRC[e])} → ${levelName(DST[e])}\n`) +
           `weight ${sign}${Math.abs(w).toPrecision(3)} (±${(QS / 2).toPrecision(2)})\n${when}`;
  }
  function drawOverlay() {
    octx.setTransform(dpr, 0, 0, dpr, 0, 0);
    octx.clearRect(0, 0, W, H);
    if (!hovered) return;
    octx.lineCap = "round";
    if (hovered.kind === "edge") {
      const e = hovered.id;
      octx.strokeStyle = "rgba(255,255,255,0.9)"; octx.lineWidth = 6;
      octx.beginPath(); tracePath(octx, e); octx.stroke();
      octx.strokeStyle = q[e] < 0 ? ST.negative : ST.positive; octx.lineWidth = 3;
      if (!real[e]) octx.setLineDash([6, 4]);
      octx.beginPath(); tracePath(octx, e); octx.stroke(); octx.setLineDash([]);
      for (const n of [SRC[e], DST[e]]) { octx.beginPath(); nodeShape(octx, n, 3); octx.strokeStyle = "#111"; octx.lineWidth = 1.5; octx.stroke(); }
    } else {
      const i = hovered.id;
      octx.lineWidth = 1.6;
      for (const e of realList) if (SRC[e] === i || DST[e] === i) {
        octx.strokeStyle = SRC[e] === i ? "rgba(20,20,20,0.75)" : "rgba(120,120,120,0.75)";
        octx.beginPath(); tracePath(octx, e); octx.stroke();
      }
      octx.beginPath(); nodeShape(octx, i, 4); octx.strokeStyle = "#111"; octx.lineWidth = 2; octx.stroke();
    }
  }
  const tip = $("tip"), hoverInfo = $("hover-info");
  function setHover(h, px, py) {
    hovered = h;
    const text = describe(h);
    if (h) {
      tip.textContent = text; tip.hidden = false;
      const r = tip.getBoundingClientRect();
      tip.style.left = Math.min(px + 14, W - r.width - 4) + "px";
      tip.style.top = (py + 16 + r.height > H ? py - r.height - 10 : py + 16) + "px";
      hoverInfo.textContent = text;
    } else tip.hidden = true;
    drawOverlay();
  }
  cOver.addEventListener("mousemove", (ev) => {
    if (!frameInfo) return;  // not drawn yet
    const r = cOver.getBoundingClientRect(), px = ev.clientX - r.left, py = ev.clientY - r.top;
    setHover(pick(px, py), px, py);
  });
  cOver.addEventListener("mouseleave", () => setHover(null, 0, 0));

  // ---------------------------------------------------------------- side panel
  const nf = (v) => v.toLocaleString("en-US");
  $("title").textContent = D.title || "wiring";
  $("subtitle").textContent = [D.subtitle, dynamic ? "dynamic wiring (inputs | hidden nodes on a circle | outputs)" : "layered layout",
    `${nf(N)} nodes`, D.edges.candidates > 0 ? `${nf(D.edges.candidates)} candidates` : ""].filter(Boolean).join(" · ");
  function levelTable() {
    if (!COL.length) return roleTable();   // dynamic: one level, so by role
    const by = COL, head = (v) => COLSHORT.get(v);  // by layout column, named as the pictures' ticks name them
    const lv = [...new Set(by)].sort((a, b) => a - b), index = new Map(lv.map((v, i) => [v, i]));
    const L = lv.length, counts = new Int32Array(L * L);
    for (const e of realList) counts[index.get(by[SRC[e]]) * L + index.get(by[DST[e]])]++;
    let used = lv.map((_, i) => { let s = 0; for (let j = 0; j < L; j++) s += counts[i * L + j] + counts[j * L + i]; return s > 0; });
    let html = "<table><tr><th>from\\to</th>" + lv.map((v, j) => used[j] ? `<th>${head(v)}</th>` : "").join("") + "</tr>";
    for (let i = 0; i < L; i++) {
      if (!used[i]) continue;
      html += `<tr><th>${head(lv[i])}</th>`;
      for (let j = 0; j < L; j++) if (used[j]) {
        const c = counts[i * L + j];
        html += c ? `<td>${nf(c)}</td>` : '<td class="zero">·</td>';
      }
      html += "</tr>";
    }
    return html + "</table>";
  }
  if (!COL.length) $("levels").previousElementSibling.hidden = true;  // its heading: "edges per level"
  function roleTable() {
    const names = ["input", "hidden", "output"], rc = new Int32Array(9);
    for (const e of realList) rc[role[SRC[e]] * 3 + role[DST[e]]]++;
    let html = "<div class=\"section\">edges per role (source → target)</div><table><tr><th>from\\to</th>" +
      names.map((n) => `<th>${n}</th>`).join("") + "</tr>";
    for (let i = 0; i < 3; i++) html += `<tr><th>${names[i]}</th>` + [0, 1, 2].map((j) => rc[i * 3 + j] ? `<td>${nf(rc[i * 3 + j])}</td>` : '<td class="zero">·</td>').join("") + "</tr>";
    return html + "</table>";
  }
  function updatePanel() {
    const step = steps[cur], m = metricsAt(step), k = realList.length, d = diffs[cur];
    const rows = [
      ["frame", S > 1 ? `${cur + 1} / ${S}` : "1 / 1 (single frame)"],
      ["step", fmtStep(step)],
      ["epoch", epochs[cur] === null ? "n/a" : epochs[cur] === 0 ? "0 (before training)" : String(epochs[cur])],
      ["test acc", m && m.test_acc !== null ? (100 * m.test_acc).toFixed(1) + "%" + (m.epoch !== null ? ` (after epoch ${m.epoch})` : "") : (step === null ? "n/a" : "n/a (no epoch yet)")],
      ["edges (k)", `${nf(k)} · density ` + (D.edges.candidates > 0 ? `${(100 * k / D.edges.candidates).toPrecision(3)}%` : "n/a")],
      ["churn", cur === 0 ? "first frame" : `<span class="add">+${nf(d.A.length)} added</span> / <span class="rem">−${nf(d.R.length)} removed</span>`],
      ["dead nodes", nf(frameInfo.count)],
    ];
    $("stats").innerHTML = rows.map(([a, b]) => `<tr><td>${a}</td><td>${b}</td></tr>`).join("");
    $("levels").innerHTML = levelTable();
    $("frame-label").textContent = `frame ${cur + 1}/${S} · step ${fmtStep(step)}`;
    $("slider").value = String(cur);
    drawChart();
  }

  // chart: churn bars per frame and the test accuracy of each epoch, x = frame
  const chart = $("chart"), cctx = chart.getContext("2d");
  const churn = diffs.map((d, f) => (f === 0 ? 0 : d.A.length + d.R.length));
  const churnMax = churn.reduce((a, b) => Math.max(a, b), 1);
  const accPerFrame = steps.map((s) => { const m = metricsAt(s); return m && m.test_acc !== null ? m.test_acc : null; });
  function drawChart() {
    if (S <= 1) return;
    const r = chart.getBoundingClientRect(), w = Math.max(r.width, 10), h = Math.max(r.height, 10);
    if (chart.width !== Math.round(w * dpr)) { chart.width = Math.round(w * dpr); chart.height = Math.round(h * dpr); }
    cctx.setTransform(dpr, 0, 0, dpr, 0, 0); cctx.clearRect(0, 0, w, h);
    const x = (f) => 4 + (S > 1 ? f / (S - 1) : 0.5) * (w - 8), base = h - 12;
    cctx.fillStyle = "#f4f4f4"; cctx.fillRect(0, 0, w, base);
    cctx.strokeStyle = "#e2e2e2"; cctx.lineWidth = 1; cctx.beginPath();
    for (const a of [0.5, 1]) { const y = Math.round(base - a * (base - 6)) + 0.5; cctx.moveTo(0, y); cctx.lineTo(w, y); }
    cctx.stroke();
    cctx.fillStyle = "#8aa6d6"; cctx.font = "9px system-ui, sans-serif"; cctx.textAlign = "left"; cctx.textBaseline = "middle";
    cctx.fillText("100%", 3, 6 + 6); cctx.fillText("50%", 3, base - 0.5 * (base - 6) + 6);
    const bw = Math.min(Math.max(1, (w - 8) / Math.max(S, 1) * 0.7), 12);
    for (let f = 1; f < S; f++) {
      const bh = churn[f] / churnMax * (base - 6);
      cctx.fillStyle = f === cur ? ST.added : "rgba(255,143,0,0.55)";
      cctx.fillRect(x(f) - bw / 2, base - bh, bw, bh);
    }
    cctx.strokeStyle = "#1f5fbf"; cctx.lineWidth = 1.6; cctx.beginPath();
    let started = false;
    for (let f = 0; f < S; f++) {
      const a = accPerFrame[f]; if (a === null) { started = false; continue; }
      const y = base - a * (base - 6);
      if (started) cctx.lineTo(x(f), y); else { cctx.moveTo(x(f), y); started = true; }
    }
    cctx.stroke();
    cctx.strokeStyle = "#222"; cctx.lineWidth = 1; cctx.beginPath(); cctx.moveTo(x(cur), 0); cctx.lineTo(x(cur), base); cctx.stroke();
    cctx.fillStyle = "#666"; cctx.font = "10px system-ui, sans-serif"; cctx.textBaseline = "bottom";
    cctx.textAlign = "left"; cctx.fillText(`step ${fmtStep(steps[0])}`, 2, h);
    cctx.textAlign = "right"; cctx.fillText(`step ${fmtStep(steps[S - 1])}`, w - 2, h);
    cctx.textAlign = "center"; cctx.fillStyle = "#1f5fbf"; cctx.fillText("— test acc", w * 0.42, h);
    cctx.fillStyle = "#e07b00"; cctx.fillText("▮ churn", w * 0.64, h);
  }
  function chartSeek(ev) {
    const r = chart.getBoundingClientRect();
    if (S > 1) goTo(Math.round((ev.clientX - r.left - 4) / Math.max(r.width - 8, 1) * (S - 1)));
  }
  chart.addEventListener("mousedown", (ev) => { chartSeek(ev); });
  chart.addEventListener("mousemove", (ev) => { if (ev.buttons & 1) chartSeek(ev); });

  // legend
  const leg = [[`<span class="sw" style="border-color:${ST.positive}"></span>weight &gt; 0` + (ranked ? ` (the ${ST.strong} strongest |w| bold, the rest faded by rank)` : "")],
               [`<span class="sw" style="border-color:${ST.negative}"></span>weight &lt; 0`],
               [`<span class="sw" style="border-color:${ST.added}"></span>added`],
               [`<span class="sw" style="border-color:${ST.removed};border-top-style:dashed"></span>removed`]];
  for (const code of Object.keys(ST.roles)) {
    const [name, marker, colour] = ST.roles[code];
    if (![...role].some((r) => r === +code)) continue;
    const shape = marker === "s" ? "" : marker === "D" ? "transform:rotate(45deg) scale(.85);" : "border-radius:50%;";
    leg.push([`<span class="mk" style="background:${colour};${shape}"></span>${name}`]);
  }
  if (dynamic) leg.push([`<span class="mk" style="background:#555;clip-path:polygon(0 0,100% 50%,0 100%)"></span>direction` +
                        (kMax > ARROWS ? ` (the ${ARROWS} strongest)` : "")]);
  leg.push([N > 40 ? `<span class="sw" style="border-color:${ST.dead_mark};width:12px"></span>dead (no input→output path)`
                   : `<span class="mk" style="background:#fff;border:1px solid ${ST.dead_edge};border-radius:50%"></span>dead`]);
  $("legend").innerHTML = leg.map((x) => `<div>${x[0]}</div>`).join("");

  // ---------------------------------------------------------------- frames and controls
  let drawn = 0, pending = false, needGeometry = true;
  let renderMs = 0;
  function render() {
    pending = false;
    const t0 = performance.now();
    const r = stage.getBoundingClientRect();
    const w = Math.max(Math.round(r.width), 50), h = Math.max(Math.round(r.height), 50), ratio = window.devicePixelRatio || 1;
    if (w !== W || h !== H || ratio !== dpr) {
      W = w; H = h; dpr = ratio;
      for (const c of [cEdges, cOver]) { c.width = Math.round(W * dpr); c.height = Math.round(H * dpr); }
      needGeometry = true;
    }
    if (needGeometry) { computeGeometry(); needGeometry = false; }
    collectReal();
    frameInfo = deadNodes();
    drawEdges();
    updatePanel();
    if (hovered) { hoverInfo.textContent = describe(hovered); tip.textContent = describe(hovered); }
    drawOverlay();
    if (drawn === 0) setTimeout(() => { if (!grid) buildGrid(); }, 30);  // hover ready before the first move
    drawn++;
    renderMs = performance.now() - t0;
    document.body.dataset.frame = String(cur);
  }
  function schedule() { if (!pending) { pending = true; requestAnimationFrame(render); } }
  function goTo(f) {
    f = Math.max(0, Math.min(S - 1, f | 0));
    seek(f);
    schedule();
  }
  const slider = $("slider");
  slider.max = String(Math.max(S - 1, 0));
  slider.addEventListener("input", () => goTo(+slider.value));
  let playing = false, lastTick = 0;
  function tick(t) {
    if (!playing) return;
    const fps = +$("fps").value;
    if (t - lastTick >= 1000 / fps) {
      lastTick = t;
      if (cur + 1 < S) goTo(cur + 1);
      else if ($("loop").checked) goTo(0);
      else { setPlaying(false); return; }
    }
    requestAnimationFrame(tick);
  }
  function setPlaying(on) {
    playing = on && S > 1;
    $("play").querySelector("path").setAttribute("d", playing ? "M4 2h3v12H4zM9 2h3v12H9z" : "M4 2v12l10-6z");
    if (playing) { if (cur === S - 1) goTo(0); lastTick = performance.now(); requestAnimationFrame(tick); }
  }
  $("play").addEventListener("click", () => setPlaying(!playing));
  $("prev").addEventListener("click", () => goTo(cur - 1));
  $("next").addEventListener("click", () => goTo(cur + 1));
  $("first").addEventListener("click", () => goTo(0));
  $("last").addEventListener("click", () => goTo(S - 1));
  $("changes").addEventListener("change", () => { showChanges = $("changes").checked; schedule(); });
  document.addEventListener("keydown", (ev) => {
    const tag = ev.target && ev.target.tagName;
    if (tag === "SELECT" || tag === "BUTTON" || (tag === "INPUT" && ev.target !== slider)) return;  // native keys
    const keys = { ArrowLeft: () => goTo(cur - 1), ArrowRight: () => goTo(cur + 1), Home: () => goTo(0),
                   End: () => goTo(S - 1), " ": () => setPlaying(!playing) };
    if (ev.target === slider && ev.key !== " ") return;  // the slider handles its own arrows
    if (keys[ev.key]) { keys[ev.key](); ev.preventDefault(); }
  });
  if (S <= 1) {
    for (const id of ["slider", "play", "prev", "next", "first", "last", "fps", "loop", "changes"]) $(id).disabled = true;
    $("chart-box").hidden = true;
  }
  window.addEventListener("resize", schedule);

  // hooks for tests and scripting
  window.explorer = {
    get frame() { return cur; }, get frames() { return S; }, get drawn() { return drawn; },
    get playing() { return playing; }, get renderMs() { return renderMs; }, get ranked() { return ranked; },
    goTo, play: () => setPlaying(true), pause: () => setPlaying(false),
    realCandidates: () => Array.from(realList, (e) => CAND[e]),
    arrowed: () => { if (!dynamic) return []; const [on] = arrowEdges(); return Array.from(realList).filter((e) => on[e]).map((e) => CAND[e]); },
    weights: () => Array.from(realList, (e) => q[e] * QS),
    changes: () => ({ added: cur > 0 ? Array.from(diffs[cur].A, (e) => CAND[e]) : [],
                      removed: cur > 0 ? Array.from(diffs[cur].R, (e) => CAND[e]) : [] }),
    nodeScreen: (i) => [nodeSX[i], nodeSY[i]],
    edgeScreen: (cand) => { const e = CAND.indexOf(cand); if (e < 0) return null; const p = curvePoints(e, 2)[1]; return p; },
    pick, hovered: () => (hovered ? { kind: hovered.kind, id: hovered.kind === "edge" ? CAND[hovered.id] : hovered.id } : null),
  };
  // file:///...html#frame=6 opens the frame labelled "frame 6" (frames count from 1); no fragment: the last
  // frame, the learned wiring (Home goes to the first, the initial wiring)
  const start = /(?:^#|&)frame=(\d+)/.exec(location.hash);
  goTo(start ? Math.min(Math.max(+start[1], 1), S) - 1 : S - 1);
})();
