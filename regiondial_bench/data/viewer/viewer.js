"use strict";
// The run viewer's script (regiondial_bench/results/view.py writes the page and its data files).
// The page holds an index of every turn (filters run on it); the turns' content (questions, raw
// answers, boxes, masks) lives in data/<token>-<n>.js files, loaded when a page shows them.
// Every text is inserted with textContent, never as HTML.
(function () {
  const D = JSON.parse(document.getElementById("view-data").textContent);
  const PAGE = 25, WIDTH = 480;
  const two = D.runs.length === 2;
  // an index entry: [dialogue id, first data file, last data file, turns, flags of run A, flags of run B]
  const ID = 0, FIRST = 1, LAST = 2, TURNS = 3, FLAGS = 4;
  // a turn's flags in one run: answered, hit, failed, reference wrong, infrastructure failure;
  // the failure reason's index + 1 in the bits above
  const ANSWERED = 1, HIT = 2, FAILED = 4, REFWRONG = 8, INFRA = 16, REASON_SHIFT = 5;
  const state = {turns: "all", round: "any", reason: "any", refwrong: false, differ: false,
                 gold: true, pred: true, hidden: new Set(), page: 0};
  const $ = (id) => document.getElementById(id);
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function colour(r) { return D.palette[(r - 1) % D.palette.length]; }
  function flags(d, run, t) { return d[FLAGS + run][t]; }

  // ---- controls
  $("summary").textContent = D.bench.name + " (" + D.bench.hash.slice(0, 19) + "), " + D.dialogues.length +
    " dialogues, " + D.bench.turns + " turns; " +
    D.runs.map((r, i) => (two ? "ABCD"[i] + ": " : "") + r.label + " [" + r.answered + " answered]").join("; ");
  if (!two) $("differ-label").hidden = true;
  for (let r = 1; r <= D.rounds; r++) {
    const o = el("option", null, String(r)); o.value = String(r); $("f-round").appendChild(o);
    const lab = el("label"); const box = el("input"); box.type = "checkbox"; box.checked = true;
    box.dataset.round = String(r); box.className = "round-toggle";
    box.addEventListener("change", () => { if (box.checked) state.hidden.delete(r); else state.hidden.add(r); redraw(); });
    const sw = el("span", "swatch"); sw.style.background = colour(r);
    lab.append(box, sw, document.createTextNode("R" + r)); $("round-toggles").appendChild(lab);
  }
  D.reasons.forEach((k, i) => { const o = el("option", null, k); o.value = String(i); $("f-reason").appendChild(o); });
  const bind = (id, key, prop, again) => $(id).addEventListener("change", (ev) => {
    state[key] = ev.target[prop]; if (again) { state.page = 0; render(); } else redraw(); });
  bind("f-turns", "turns", "value", true); bind("f-round", "round", "value", true);
  bind("f-reason", "reason", "value", true); bind("f-refwrong", "refwrong", "checked", true);
  bind("f-differ", "differ", "checked", true);
  bind("o-gold", "gold", "checked", false); bind("o-pred", "pred", "checked", false);
  $("prev").addEventListener("click", () => { if (state.page > 0) { state.page--; render(); } });
  $("next").addEventListener("click", () => { state.page++; render(); });

  // ---- filtering, on the index alone
  function turnMatches(d, t, run) {
    const f = flags(d, run, t);
    if (state.round !== "any" && t + 1 !== Number(state.round)) return false;
    if (state.turns === "miss" && (!(f & ANSWERED) || (f & HIT))) return false;
    if (state.turns === "failed" && !(f & FAILED)) return false;
    if (state.reason !== "any" && (f >> REASON_SHIFT) - 1 !== Number(state.reason)) return false;
    if (state.refwrong && !(f & REFWRONG)) return false;
    return true;
  }
  // the two runs differ on a turn: answered in one only, or a hit in one and a miss in the other
  function differs(d, t) {
    const a = flags(d, 0, t), b = flags(d, 1, t);
    return (a & ANSWERED) !== (b & ANSWERED) || (a & HIT) !== (b & HIT);
  }
  function differing(d) { let k = 0; for (let t = 0; t < d[TURNS]; t++) if (differs(d, t)) k++; return k; }
  function matched(d) {
    const set = new Set();
    for (let t = 0; t < d[TURNS]; t++) {
      if (state.differ && !differs(d, t)) continue;
      for (let run = 0; run < D.runs.length; run++) if (turnMatches(d, t, run)) { set.add(t); break; }
    }
    return set;
  }

  // ---- data files: a page loads the ones its dialogues are in, once
  const chunks = new Map(), loading = new Map();
  window.regiondialChunk = function (token, n, parts) { if (token === D.token) chunks.set(n, parts); };
  function loadChunk(n) {
    if (chunks.has(n)) return Promise.resolve();
    if (!loading.has(n)) {
      loading.set(n, new Promise((resolve, reject) => {
        const s = document.createElement("script");
        s.src = D.data + "/" + D.token + "-" + n + ".js";
        s.onload = () => {
          s.remove();
          if (chunks.has(n)) resolve();
          else { loading.delete(n); reject(new Error(s.getAttribute("src") + " belongs to another build; reload the page")); }
        };
        s.onerror = () => {
          s.remove(); loading.delete(n);
          reject(new Error("cannot load " + s.getAttribute("src") + ": keep index.html beside its " + D.data + "/ folder"));
        };
        document.head.appendChild(s);
      }));
    }
    return loading.get(n);
  }
  // a data file holds parts [dialogue, first turn, image (first part only), turns, answers per run]
  const assembled = new Map();
  function dialogueData(di) {
    if (assembled.has(di)) return assembled.get(di);
    const d = D.dialogues[di];
    const out = {img: null, w: 1, h: 1, turns: [], runs: D.runs.map(() => [])};
    for (let n = d[FIRST]; n <= d[LAST]; n++) {
      for (const part of chunks.get(n)) {
        if (part[0] !== di) continue;
        if (part[2]) { out.img = part[2].img; out.w = part[2].w; out.h = part[2].h; }
        for (const turn of part[3]) out.turns.push(turn);
        part[4].forEach((answers, run) => { for (const a of answers) out.runs[run].push(a); });
      }
    }
    assembled.set(di, out);
    return out;
  }

  // ---- COCO compressed RLE (column-major counts, alternating 0/1 runs)
  function decodeRle(counts) {
    const out = []; let p = 0;
    while (p < counts.length) {
      let x = 0, k = 0, more = 1, c = 0;
      while (more && p < counts.length) {
        c = counts.charCodeAt(p) - 48; x |= (c & 0x1f) << (5 * k); more = c & 0x20; p++; k++;
        if (!more && (c & 0x10)) x |= -1 << (5 * k);
      }
      if (out.length > 2) x += out[out.length - 2];
      out.push(x);
    }
    return out;
  }
  const maskCache = new Map();
  function maskCanvas(m, rgb) {
    const key = m.counts + "|" + rgb;
    if (maskCache.has(key)) return maskCache.get(key);
    const h = m.size[0], w = m.size[1];
    const c = document.createElement("canvas"); c.width = w; c.height = h;
    if (w > 0 && h > 0 && w * h <= 64e6) {
      const ctx = c.getContext("2d"); const img = ctx.createImageData(w, h);
      const runs = decodeRle(m.counts); let i = 0, v = 0;
      for (const n of runs) {
        if (v) for (let j = i; j < i + n && j < w * h; j++) {
          const x = Math.floor(j / h), y = j % h, o = 4 * (y * w + x);
          img.data[o] = rgb[0]; img.data[o + 1] = rgb[1]; img.data[o + 2] = rgb[2]; img.data[o + 3] = 255;
        }
        i += Math.max(n, 0); v = 1 - v;
      }
      ctx.putImageData(img, 0, 0);
    }
    maskCache.set(key, c);
    return c;
  }
  function hexRgb(h) { return [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16)); }

  // ---- drawing
  const figures = [];
  function draw(fig) {
    const {canvas, dd, run, scale} = fig;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    dd.turns.forEach((turn, t) => {
      const r = t + 1;
      if (state.hidden.has(r)) return;
      const col = colour(r), rgb = hexRgb(col);
      const a = dd.runs[run][t];
      if (state.gold) {
        if (turn.gm) { ctx.globalAlpha = 0.25; ctx.drawImage(maskCanvas(turn.gm, rgb), 0, 0, canvas.width, canvas.height); }
        ctx.globalAlpha = 1; ctx.setLineDash([5, 3]); ctx.lineWidth = 1.5; ctx.strokeStyle = col;
        for (const b of turn.gold) ctx.strokeRect(b[0] * scale, b[1] * scale, (b[2] - b[0]) * scale, (b[3] - b[1]) * scale);
      }
      if (state.pred && a) {
        if (a.mask) { ctx.globalAlpha = 0.35; ctx.drawImage(maskCanvas(a.mask, rgb), 0, 0, canvas.width, canvas.height); }
        ctx.globalAlpha = 1; ctx.setLineDash([]); ctx.lineWidth = 2; ctx.strokeStyle = col; ctx.fillStyle = col;
        for (const b of a.boxes) ctx.strokeRect(b[0] * scale, b[1] * scale, (b[2] - b[0]) * scale, (b[3] - b[1]) * scale);
        for (const p of a.points) { ctx.beginPath(); ctx.arc(p[0] * scale, p[1] * scale, 3, 0, 2 * Math.PI); ctx.fill(); }
      }
    });
    ctx.globalAlpha = 1;
  }
  function redraw() { figures.forEach(draw); }

  function rawText(pre, raw) {
    const re = /<\/?(think|answer|rethink|reasoning)>/gi; let last = 0, m;
    while ((m = re.exec(raw)) !== null) {
      if (m.index > last) pre.appendChild(document.createTextNode(raw.slice(last, m.index)));
      pre.appendChild(el("span", "tag", m[0])); last = m.index + m[0].length;
    }
    if (last < raw.length) pre.appendChild(document.createTextNode(raw.slice(last)));
  }

  function turnRow(di, d, dd, run, t, isMatch) {
    const r = t + 1, f = flags(d, run, t), a = dd.runs[run][t], turn = dd.turns[t];
    const row = el("div", "turn" + (isMatch ? " match" : " dim"));
    row.id = "t-" + di + "-" + run + "-" + t; row.dataset.round = String(r);
    const head = el("div", "rnd"); const sw = el("span", "swatch"); sw.style.background = colour(r);
    head.append(sw, document.createTextNode("R" + r)); row.appendChild(head);
    const body = el("div");
    const q = el("div", "q");
    if (!a) { q.textContent = "(not answered)"; body.appendChild(q); row.appendChild(body); return row; }
    for (const seg of a.q) {
      if (seg.length === 1) { q.appendChild(document.createTextNode(seg[0])); continue; }
      const link = el("a", "ref", seg[0]);
      link.href = "#t-" + di + "-" + run + "-" + seg[1];
      if (seg[2] === "no-region" || (seg[2] === "predicted" && !(flags(d, run, seg[1]) & HIT))) link.classList.add("wrong");
      link.title = "from round " + (seg[1] + 1) + " (" + seg[2] + ")";
      link.addEventListener("click", () => {
        const target = document.getElementById(link.hash.slice(1));
        if (target) { target.classList.add("flash"); setTimeout(() => target.classList.remove("flash"), 1500); }
      });
      q.appendChild(link);
    }
    if (a.qcut) q.appendChild(el("span", "cut", " … (" + a.qcut + " more characters in the log)"));
    body.appendChild(q);
    const pre = el("pre", "raw"); rawText(pre, a.raw);
    if (a.cut) pre.appendChild(el("span", "cut", " … (" + a.cut + " more characters in the log)"));
    body.appendChild(pre);
    const meta = el("div", "meta");
    meta.appendChild(el("span", (f & HIT) ? "hit" : "miss", (f & HIT) ? "hit" : "miss"));
    meta.appendChild(document.createTextNode(" · IoU " + a.iou.toFixed(3)));
    if (f & REFWRONG) meta.appendChild(document.createTextNode(" · reference was wrong"));
    if (a.err !== null) { meta.appendChild(document.createTextNode(" · ")); meta.appendChild(el("span", "err", a.err)); }
    if (f & INFRA) meta.appendChild(document.createTextNode(" · infrastructure failure (not the model's answer)"));
    if (a.shapes) meta.appendChild(document.createTextNode(" · " + a.shapes + " more boxes or points not drawn"));
    if (a.maskcut || (turn && turn.gmcut)) meta.appendChild(document.createTextNode(" · a mask too large for the page is not drawn"));
    body.appendChild(meta); row.appendChild(body);
    return row;
  }

  function card(di, d, hits) {
    const dd = dialogueData(di);
    const sec = el("section", "dialogue"); sec.id = "d-" + di; sec.dataset.dialogue = d[ID];
    const k = two ? differing(d) : 0;
    sec.appendChild(el("h2", null, d[ID] + "  (" + d[TURNS] + " rounds" + (k ? ", " + k + " differ" : "") + ")"));
    const runsBox = el("div", "runs");
    D.runs.forEach((r, run) => {
      const col = el("div", "run"); col.dataset.run = String(run);
      if (two) col.appendChild(el("h3", null, "ABCD"[run] + ": " + r.label));
      const scale = Math.min(WIDTH, dd.w) / dd.w;
      const w = Math.round(dd.w * scale), h = Math.round(dd.h * scale);
      const fig = el("div", "figure"); fig.style.width = w + "px"; fig.style.height = h + "px";
      if (dd.img) { const img = el("img"); img.src = dd.img; img.width = w; img.height = h; img.alt = d[ID]; fig.appendChild(img); }
      const canvas = el("canvas"); canvas.width = w; canvas.height = h; fig.appendChild(canvas);
      col.appendChild(fig);
      figures.push({canvas, dd, run, scale});
      for (let t = 0; t < d[TURNS]; t++) col.appendChild(turnRow(di, d, dd, run, t, hits.has(t)));
      runsBox.appendChild(col);
    });
    sec.appendChild(runsBox);
    return sec;
  }

  // body[data-ready] is "0" while a page waits for its data files and "1" once it is drawn
  let generation = 0;
  function render() {
    const mine = ++generation;
    document.body.dataset.ready = "0";
    const shown = [];
    let turns = 0;
    D.dialogues.forEach((d, di) => { const m = matched(d); if (m.size) { shown.push([di, d, m]); turns += m.size; } });
    const pages = Math.max(1, Math.ceil(shown.length / PAGE));
    state.page = Math.min(state.page, pages - 1);
    $("status").textContent = shown.length + " of " + D.dialogues.length + " dialogues, " + turns + " turns match";
    $("page").textContent = "page " + (state.page + 1) + " of " + pages;
    const slice = shown.slice(state.page * PAGE, (state.page + 1) * PAGE);
    const needed = new Set();
    for (const [, d] of slice) for (let n = d[FIRST]; n <= d[LAST]; n++) needed.add(n);
    Promise.all(Array.from(needed, loadChunk)).then(() => {
      if (mine !== generation) return;
      const main = $("dialogues"); main.replaceChildren(); figures.length = 0;
      for (const [di, d, m] of slice) main.appendChild(card(di, d, m));
      redraw();
      document.body.dataset.ready = "1";
    }, (err) => {
      if (mine !== generation) return;
      $("status").textContent = err.message;
      document.body.dataset.ready = "1";
    });
  }
  render();
})();
