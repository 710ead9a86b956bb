// rnnkit inspect: draws the report from the JSON in #rnnkit-data (see report.py for its fields). No library,
// no network: plain DOM and SVG.
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("rnnkit-data").textContent);
  const app = document.getElementById("app");
  const NS = "http://www.w3.org/2000/svg";
  const T = D.tokens.length;
  const L = D.levels;
  const oov = new Set(D.oov);
  const cur = { mode: "state", block: D.initial.block, kind: D.initial.kind, unit: D.initial.unit };
  const fmt = (v, d) => (v === null || v === undefined ? "–" : Number(v).toFixed(d));

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "on") for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
      else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k);
    return e;
  }
  function sv(tag, attrs, text) {
    const e = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    if (text !== undefined) e.textContent = text;
    return e;
  }
  const show = (t) => (t === "\n" ? "↵" : t === "\t" ? "⇥" : t);

  // ---- the state levels: 4 bits per token, unit-major, decoded lazily per (block, kind) ----------------
  const bytesOf = new Map();
  const stateOf = (b, kind) => D.blocks[b].states.find((s) => s.kind === kind);
  const colourable = (b) => D.blocks[b].states.filter((s) => s.levels);
  function levels(b, kind, u) {
    const s = stateOf(b, kind);
    if (!s || !s.levels || u >= s.units) return null;
    let bytes = bytesOf.get(s);
    if (!bytes) {
      const bin = atob(s.levels);
      bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
      bytesOf.set(s, bytes);
    }
    const n = Math.ceil(D.coloured / 2), off = u * n, out = new Uint8Array(D.coloured);
    for (let t = 0; t < D.coloured; t++) {
      const v = bytes[off + (t >> 1)];
      out[t] = t & 1 ? v & 15 : v >> 4;
    }
    return out;
  }
  const levelValue = (q, scale) => ((q + 0.5) / L * 2 - 1) * scale;
  const lossLevel = (x) => (x === null ? null : Math.min(L - 1, Math.floor((x / D.loss_high) * L)));

  // ---- header ----------------------------------------------------------------------------------------
  app.append(el("h1", {}, D.title));
  for (const [k, v] of Object.entries(D.meta)) app.append(el("p", { class: "meta" }, `${k}: ${v}`));
  if (D.oov.length) {
    app.append(el("p", { class: "meta" }, `${D.oov.length} token(s) outside the model's vocabulary, read as <unk> `,
      el("span", { class: "oov" }, "marked like this"), "."));
  }

  // ---- text ------------------------------------------------------------------------------------------
  app.append(el("h2", {}, "Text"));
  const modeSel = el("select", { id: "mode" }, el("option", { value: "state" }, "a unit's state"));
  if (D.loss) modeSel.append(el("option", { value: "loss" }, "per-token loss"));
  const blockSel = el("select", { id: "block" });
  D.blocks.forEach((b, i) => blockSel.append(el("option", { value: i }, b.name)));
  const kindSel = el("select", { id: "kind" });
  const unitSel = el("select", { id: "unit" });
  const legend = el("div", { class: "legend", id: "legend" });
  app.append(el("div", { class: "controls" }, "colour by", modeSel, blockSel, kindSel, unitSel, legend));
  if (D.coloured < T) {
    app.append(el("p", { class: "note" }, `Unit colours cover the first ${D.coloured.toLocaleString()} of ` +
      `${T.toLocaleString()} tokens (the report's size budget); every statistic uses all of them.`));
  }
  const textBox = el("div", { class: "text", id: "text" });
  const spans = new Array(T), base = new Array(T);
  const frag = document.createDocumentFragment();
  for (let t = 0; t < T; t++) {
    if (D.seps && D.seps[t]) frag.append(D.seps[t]);
    const tok = D.tokens[t], sp = document.createElement("span");
    sp.textContent = tok === "\n" ? "↵\n" : tok;
    sp._i = t;
    base[t] = (oov.has(t) ? "oov " : "") + (tok === "\n" ? "nl " : "");
    spans[t] = sp;
    frag.append(sp);
  }
  textBox.append(frag);
  app.append(textBox);
  const tip = el("div", { class: "tip" });
  document.body.append(tip);
  textBox.addEventListener("mousemove", (e) => {
    const t = e.target._i;
    if (t === undefined) { tip.style.display = "none"; return; }
    const s = stateOf(cur.block, cur.kind);
    const lv = cur.mode === "state" && t < D.coloured ? curLevels : null;
    let s1 = `#${t} ${JSON.stringify(D.tokens[t])}${oov.has(t) ? " (not in vocabulary)" : ""}`;
    if (lv) s1 += `\n${cur.kind}[${cur.unit}] ≈ ${fmt(levelValue(lv[t], s.scale[cur.unit]), 3)}`;
    if (D.loss && D.loss[t] !== null) s1 += `\nloss ${fmt(D.loss[t], 3)} nats`;
    tip.textContent = s1;
    tip.style.display = "block";
    tip.style.left = e.clientX + 12 + "px";
    tip.style.top = e.clientY + 12 + "px";
  });
  textBox.addEventListener("mouseleave", () => { tip.style.display = "none"; });

  let curLevels = null;
  function recolour() {
    if (cur.mode === "loss") {
      curLevels = null;
      for (let t = 0; t < T; t++) {
        const q = lossLevel(D.loss[t]);
        spans[t].className = base[t] + (q === null ? "" : "l" + q);
      }
    } else {
      curLevels = levels(cur.block, cur.kind, cur.unit);
      for (let t = 0; t < T; t++) spans[t].className = base[t] + (curLevels && t < D.coloured ? "q" + curLevels[t] : "off");
    }
    app.dataset.coloured = `${cur.mode}:${cur.block}:${cur.kind}:${cur.unit}`;
    drawLegend();
    drawUnit();
    markDots();
  }
  function drawLegend() {
    legend.textContent = "";
    const bar = el("span", { class: "bar" });
    for (let q = 0; q < L; q++) bar.append(el("span", { class: (cur.mode === "loss" ? "l" : "q") + q }));
    if (cur.mode === "loss") {
      legend.append("0", bar, `≥ ${fmt(D.loss_high, 2)} nats (mean ${fmt(D.loss_mean, 3)})`);
    } else {
      const s = stateOf(cur.block, cur.kind), sc = s.scale[cur.unit];
      legend.append(`${fmt(-sc, 2)}`, bar, `${fmt(sc, 2)}`);
    }
  }
  function syncControls() {
    modeSel.value = cur.mode;
    blockSel.value = String(cur.block);
    kindSel.textContent = "";
    for (const s of colourable(cur.block)) kindSel.append(el("option", { value: s.kind }, `${s.kind} (${s.units} units)`));
    kindSel.value = cur.kind;
    const s = stateOf(cur.block, cur.kind);
    if (unitSel.options.length !== s.units || unitSel.dataset.for !== `${cur.block}:${cur.kind}`) {
      unitSel.textContent = "";
      for (let u = 0; u < s.units; u++) unitSel.append(el("option", { value: u }, `unit ${u}`));
      unitSel.dataset.for = `${cur.block}:${cur.kind}`;
    }
    unitSel.value = String(cur.unit);
  }
  function select(b, kind, u) {
    Object.assign(cur, { mode: "state", block: b, kind: kind, unit: u });
    syncControls();
    recolour();
  }
  modeSel.addEventListener("change", () => { cur.mode = modeSel.value; recolour(); });
  blockSel.addEventListener("change", () => {
    const b = Number(blockSel.value), k = colourable(b)[0];
    select(b, k.kind, Math.min(cur.unit, k.units - 1));
  });
  kindSel.addEventListener("change", () => {
    const s = stateOf(cur.block, kindSel.value);
    select(cur.block, s.kind, Math.min(cur.unit, s.units - 1));
  });
  unitSel.addEventListener("change", () => select(cur.block, cur.kind, Number(unitSel.value)));

  // ---- the chosen unit: its strongest contexts and features --------------------------------------------
  app.append(el("h2", {}, "The chosen unit"));
  const unitBox = el("div", { id: "unit-box" });
  app.append(unitBox);
  function context(p, lv) {
    const line = el("div", { class: "ctx" });
    let chars = 0, a = p;
    while (a > 0 && chars < 34) { a--; chars += D.tokens[a].length + (D.seps ? D.seps[a].length : 0); }
    const b = Math.min(T, p + 8);
    for (let t = a; t < b; t++) {
      if (D.seps && D.seps[t] && t > a) line.append(D.seps[t]);
      const cls = (lv && t < D.coloured ? "q" + lv[t] : "") + (t === p ? " hit" : "");
      line.append(el("span", { class: cls }, show(D.tokens[t])));
    }
    return line;
  }
  function drawUnit() {
    unitBox.textContent = "";
    const blk = D.blocks[cur.block], s = stateOf(cur.block, cur.kind), u = cur.unit;
    unitBox.append(el("p", {}, el("b", {}, `${blk.name} · ${cur.kind} · unit ${u}`),
      `  (colour scale ±${fmt(s.scale[u], 3)})`));
    const rs = Object.keys(D.features).filter((f) => s.feature_r[f]).map((f) => `${f} r = ${fmt(s.feature_r[f][u], 2)}`);
    unitBox.append(el("p", { class: "meta" }, rs.length ? "correlation with " + rs.join(", ") : "no text feature varies in this text"));
    const lv = curLevels || levels(cur.block, cur.kind, u);
    const cols = el("div", { class: "cols" });
    for (const [key, label] of [["top", "highest values"], ["bottom", "lowest values"]]) {
      const box = el("div", {}, el("h3", {}, label));
      for (const p of s[key][u]) if (p >= 0) box.append(context(p, lv));
      cols.append(box);
    }
    unitBox.append(cols);
  }

  // ---- units that track text features -----------------------------------------------------------------
  app.append(el("h2", {}, "Units that track features of the text"));
  app.append(el("p", { class: "note" }, "Pearson correlation between a unit's state and the feature over every token; click a row to colour the text by that unit."));
  const featBox = el("div", { class: "cols", id: "features" });
  for (const [f, what] of Object.entries(D.features)) {
    const box = el("div", {}, el("h3", {}, f), el("p", { class: "note" }, what));
    if (!D.present[f]) box.append(el("p", { class: "meta" }, "not present in this text"));
    else {
      const tbl = el("table", {}, el("tr", {}, el("th", {}, "unit"), el("th", {}, "r")));
      for (const [b, kind, u, r] of D.ranking[f]) {
        tbl.append(el("tr", { class: "pick", on: { click: () => select(b, kind, u) } },
          el("td", {}, `${D.blocks[b].name} · ${kind} · ${u}`), el("td", {}, fmt(r, 3))));
      }
      box.append(tbl);
    }
    featBox.append(box);
  }
  app.append(featBox);

  // ---- gates: saturation scatter and histograms ---------------------------------------------------------
  app.append(el("h2", {}, "Gates"));
  app.append(el("p", { class: "note" }, "Saturation (Karpathy, Johnson & Fei-Fei 2015): one dot per unit, the fraction of steps " +
    "its gate spends in the lowest tenth of its range (x) against the highest tenth (y). Click a dot to colour the text by that unit."));
  const dots = [];
  function gateUnitKind(b, g) { // the state a gate's dot stands for: the one of that name (Jordan h), else the first
    const ok = colourable(b).filter((s) => s.units === g.left.length);
    return (ok.find((s) => s.kind === g.name) || ok[0] || { kind: null }).kind;
  }
  function scatter(b, g) {
    const W = 210, H = 210, m = 34, w = W - m - 8, h = H - m - 18;
    const svg = sv("svg", { width: W, height: H, class: "plot scatter" });
    svg.append(sv("text", { x: m, y: 12, class: "title" }, `${D.blocks[b].name} · ${g.name}`));
    svg.append(sv("line", { x1: m, y1: 18, x2: m, y2: 18 + h, class: "axis" }));
    svg.append(sv("line", { x1: m, y1: 18 + h, x2: m + w, y2: 18 + h, class: "axis" }));
    svg.append(sv("line", { x1: m, y1: 18, x2: m + w, y2: 18 + h, class: "guide" }));
    svg.append(sv("text", { x: m + w / 2, y: H - 4, "text-anchor": "middle" }, `fraction < ${fmt(g.low, 1)}`));
    svg.append(sv("text", { x: 10, y: 18 + h / 2, transform: `rotate(-90 10 ${18 + h / 2})`, "text-anchor": "middle" }, `fraction > ${fmt(g.high, 1)}`));
    for (const [v, lab] of [[0, "0"], [1, "1"]]) {
      svg.append(sv("text", { x: m + v * w, y: 18 + h + 11, "text-anchor": "middle" }, lab));
      svg.append(sv("text", { x: m - 4, y: 18 + h - v * h + 3, "text-anchor": "end" }, lab));
    }
    const kind = gateUnitKind(b, g);
    g.left.forEach((x, u) => {
      const c = sv("circle", { cx: m + x * w, cy: 18 + h - g.right[u] * h, r: 2.6 });
      c.append(sv("title", {}, `unit ${u}: ${fmt(x * 100, 1)}% low, ${fmt(g.right[u] * 100, 1)}% high`));
      if (kind) c.addEventListener("click", () => select(b, kind, u));
      c._b = b; c._u = u; c._kind = kind;
      dots.push(c);
      svg.append(c);
    });
    return svg;
  }
  function histogram(b, g) {
    const W = 210, H = 120, m = 8, w = W - 2 * m, h = H - 38;
    const svg = sv("svg", { width: W, height: H, class: "plot hist" });
    svg.append(sv("text", { x: m, y: 12, class: "title" }, `${D.blocks[b].name} · ${g.name} values`));
    const f = g.hist.fraction, top = Math.max(...f) || 1, bw = w / f.length;
    f.forEach((v, i) => svg.append(sv("rect", { x: m + i * bw, y: 18 + h - (v / top) * h, width: Math.max(1, bw - 1), height: (v / top) * h, class: "bar" })));
    svg.append(sv("line", { x1: m, y1: 18 + h, x2: m + w, y2: 18 + h, class: "axis" }));
    const edge = g.hist.clipped ? "≤ " : "", edge2 = g.hist.clipped ? "≥ " : "";
    svg.append(sv("text", { x: m, y: H - 6 }, edge + fmt(g.hist.lo, 2)));
    svg.append(sv("text", { x: m + w, y: H - 6, "text-anchor": "end" }, edge2 + fmt(g.hist.hi, 2)));
    return svg;
  }
  D.blocks.forEach((blk, b) => {
    app.append(el("h3", {}, blk.name));
    const sat = blk.gates.filter((g) => g.left);
    if (sat.length) app.append(el("div", { class: "row" }, ...sat.map((g) => scatter(b, g))));
    app.append(el("div", { class: "row" }, ...blk.gates.map((g) => histogram(b, g))));
  });
  function markDots() {
    for (const c of dots) {
      const on = cur.mode === "state" && c._b === cur.block && c._u === cur.unit && c._kind === cur.kind;
      c.setAttribute("class", on ? "sel" : "");
      if (on) c.parentNode.append(c); // drawn last: on top
    }
  }

  // ---- line plots: loss over the text, gradient flow ------------------------------------------------------
  function linePlot(id, series, opts) {
    const W = opts.width, H = 230, ml = 54, mr = 12, mt = 14, mb = 34, w = W - ml - mr, h = H - mt - mb;
    const svg = sv("svg", { width: W, height: H, class: "plot line", id: id });
    const all = series.flatMap((s) => s.points.map((p) => p[1])).filter((v) => v !== null && (!opts.log || v > 0));
    let lo = Math.min(...all), hi = Math.max(...all);
    if (opts.log) { lo = Math.log10(lo); hi = Math.log10(hi); }
    if (opts.zero) lo = Math.min(lo, 0);
    if (hi <= lo) hi = lo + 1;
    const xmax = Math.max(...series.map((s) => s.points[s.points.length - 1][0]));
    const xmin = opts.xmin, X = (x) => ml + ((x - xmin) / (xmax - xmin || 1)) * w;
    const Y = (v) => mt + h - (((opts.log ? Math.log10(v) : v) - lo) / (hi - lo)) * h;
    svg.append(sv("line", { x1: ml, y1: mt, x2: ml, y2: mt + h, class: "axis" }));
    svg.append(sv("line", { x1: ml, y1: mt + h, x2: ml + w, y2: mt + h, class: "axis" }));
    // y ticks: whole powers of ten on a log scale spanning two or more, else five even steps
    const decades = [];
    if (opts.log) for (let e = Math.ceil(lo); e <= Math.floor(hi); e++) decades.push(e);
    const yticks = decades.length >= 2 ? decades : [0, 1, 2, 3, 4].map((k) => lo + ((hi - lo) * k) / 4);
    for (const v of yticks) {
      const label = opts.log ? (decades.length >= 2 ? "1e" + v : Math.pow(10, v).toExponential(1)) : v.toFixed(2);
      svg.append(sv("text", { x: ml - 4, y: mt + h - ((v - lo) / (hi - lo)) * h + 3, "text-anchor": "end" }, label));
    }
    for (let k = 0; k <= 4; k++) {
      svg.append(sv("text", { x: X(xmin + ((xmax - xmin) * k) / 4), y: mt + h + 13, "text-anchor": "middle" }, Math.round(xmin + ((xmax - xmin) * k) / 4)));
    }
    svg.append(sv("text", { x: ml + w / 2, y: H - 4, "text-anchor": "middle" }, opts.xlabel));
    svg.append(sv("text", { x: 12, y: mt + h / 2, transform: `rotate(-90 12 ${mt + h / 2})`, "text-anchor": "middle" }, opts.ylabel));
    const colours = ["#3a6fb0", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
    series.forEach((s, i) => {
      const pts = s.points.filter((p) => p[1] !== null && (!opts.log || p[1] > 0)).map((p) => `${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`);
      svg.append(sv("polyline", { points: pts.join(" "), fill: "none", stroke: colours[i % 6], "stroke-width": 1.4 }));
      if (series.length > 1) svg.append(sv("text", { x: ml + w - 4, y: mt + 12 + 12 * i, "text-anchor": "end", style: `fill: ${colours[i % 6]}` }, s.name));
    });
    svg._x = (clientX) => xmin + ((clientX - svg.getBoundingClientRect().left - ml) / w) * (xmax - xmin);
    return svg;
  }
  if (D.loss) {
    app.append(el("h2", {}, "Loss per token"));
    const n = Math.max(1, Math.round(T / 800)), pts = [];
    for (let a = 1; a < T; a += n) {
      let s = 0, c = 0;
      for (let t = a; t < Math.min(T, a + n); t++) if (D.loss[t] !== null) { s += D.loss[t]; c++; }
      if (c) pts.push([a + (Math.min(T, a + n) - a - 1) / 2, s / c]);
    }
    app.append(el("p", { class: "note" }, `−log p(token | everything before it), mean ${fmt(D.loss_mean, 3)} nats ` +
      `(${fmt(D.loss_mean / Math.LN2, 3)} bits) per token${n > 1 ? `; the curve averages ${n} tokens a point` : ""}. Click it to jump there in the text.`));
    const plot = linePlot("loss-plot", [{ name: "loss", points: pts }], { width: 1100, xmin: 0, zero: true, xlabel: "token", ylabel: "nats" });
    plot.addEventListener("click", (e) => {
      const t = Math.max(0, Math.min(T - 1, Math.round(plot._x(e.clientX))));
      cur.mode = "loss"; modeSel.value = "loss"; recolour();
      spans[t].scrollIntoView({ block: "center" });
      spans[t].classList.add("at");
      setTimeout(() => spans[t].classList.remove("at"), 1500);
    });
    app.append(plot);
  }
  if (D.gradflow) {
    app.append(el("h2", {}, "Gradient flow through time"));
    app.append(el("p", { class: "note" }, "‖∂L_T/∂s_t‖ against the distance T − t: how strongly the loss after a window's last token " +
      "reaches back to each layer's state t steps earlier (mean over windows spread over the text), as rnnkit gradflow measures it."));
    const series = D.gradflow.map((row, l) => ({ name: `layer ${l + 1}`, points: row.map((v, d) => [d + 1, v]) }));
    app.append(linePlot("gradflow-plot", series, { width: 560, xmin: 1, log: true, xlabel: "distance T − t (steps)", ylabel: "‖∂L_T/∂s_t‖" }));
  }

  syncControls();
  recolour();
  app.dataset.ready = "1";
})();
