// The run page of `cllm report` (data inline) and `cllm serve` (data polled from /api/run).
// Everything is drawn here as inline SVG: no library, nothing loaded from anywhere.
//
// The data (built by run/run_data.cpp, RunReader::view):
//   meta      {run_dir, name, generated_at, live, max_points}
//   status    {state: starting | running | finished | stopped | gone, text}
//   progress  {step, steps, loss, val_loss, tokens_per_s, train_s, eta_s}
//   stats     exact figures over every row: rows, first_step, last_step, loss/val_loss/val_bpb
//             {min: {step, value}, last: {step, value}}, tokens_per_s_median, step_ms_median,
//             step_ms_p95, restarts, deadline_kills, subtree_restarts, checkpoints, resumes
//   series    loss, loss_smooth (+span), val_loss, val_bpb, lr, grad_norm, tokens_per_s,
//             step_ms: {x: steps, y: values, n: rows with a value} (min/max-decimated past
//             meta.max_points); share {x, compute, fold, reduce, wait, wait_known, per_step}
//   events    [{step, kind, count, detail}] (kind: restart, deadline_kill, subtree_restart,
//             resume, checkpoint, stop), events_bucket (steps merged per entry; 1 = exact)
//   config, summary (the run's JSON files), sample (text), spheres (spheres.json: id, level,
//             parent, group, shards, compute_ms, fold_ms, reduce_ms, wait_ms, restarts and,
//             where present, host / node, deadline_kills), notices [{level, text}], version
(function () {
  'use strict';

  const SVGNS = 'http://www.w3.org/2000/svg';
  const MODE = document.body.dataset.mode;

  // ---------------------------------------------------------------------------------------
  // Small helpers

  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    if (attrs) for (const k in attrs) {
      const v = attrs[k];
      if (v == null || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k === 'cls') e.className = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of kids.flat()) if (c != null) e.append(c.nodeType ? c : String(c));
    return e;
  }
  function s(tag, attrs, parent) {
    const e = document.createElementNS(SVGNS, tag);
    if (attrs) for (const k in attrs) if (attrs[k] != null) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }
  function fill(id, ...kids) {
    const e = document.getElementById(id);
    e.replaceChildren(...kids.flat().filter((k) => k != null));
    return e;
  }
  const finite = (x) => typeof x === 'number' && isFinite(x);
  function num(x, digits = 4) {
    if (!finite(x)) return '–';
    const a = Math.abs(x);
    if (a >= 10000) return Math.round(x).toLocaleString('en-US');
    if (a >= 1000) return x.toLocaleString('en-US', { maximumFractionDigits: 1 });
    if (a !== 0 && (a < 1e-3)) return x.toExponential(2);
    return String(+x.toPrecision(digits));
  }
  const int = (x) => (finite(x) ? Math.round(x).toLocaleString('en-US') : '–');
  function si(x) {
    if (!finite(x)) return '–';
    const a = Math.abs(x);
    if (a >= 1e6) return +(x / 1e6).toPrecision(3) + 'M';
    if (a >= 1e4) return +(x / 1e3).toPrecision(3) + 'k';
    return num(x, 3);
  }
  function dur(sec) {
    if (!finite(sec) || sec < 0) return '–';
    const t = Math.round(sec);
    if (t >= 3600) return `${Math.floor(t / 3600)}h${String(Math.floor((t % 3600) / 60)).padStart(2, '0')}m`;
    if (t >= 60) return `${Math.floor(t / 60)}m${String(t % 60).padStart(2, '0')}s`;
    return `${t}s`;
  }
  function ms(x) {
    if (!finite(x)) return '–';
    if (x >= 60000) return dur(x / 1000);
    if (x >= 1000) return (x / 1000).toPrecision(3) + ' s';
    return num(x, 3) + ' ms';
  }
  function niceTicks(a, b, n) {
    if (!(b > a)) b = a + 1;
    const raw = (b - a) / Math.max(1, n);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const e = raw / mag;
    const step = (e >= 7.5 ? 10 : e >= 3.5 ? 5 : e >= 1.5 ? 2 : 1) * mag;
    const out = [];
    for (let v = Math.ceil(a / step) * step; v <= b + step * 1e-9; v += step) out.push(+v.toPrecision(12));
    return out;
  }
  function scale(d0, d1, r0, r1) {
    const k = (r1 - r0) / (d1 - d0 || 1);
    const f = (v) => r0 + (v - d0) * k;
    f.inv = (p) => d0 + (p - r0) / k;
    return f;
  }
  // Index of the point of xs (ascending) nearest to x.
  function nearest(xs, x) {
    let lo = 0, hi = xs.length - 1;
    if (hi < 0) return -1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (xs[mid] < x) lo = mid; else hi = mid;
    }
    return Math.abs(xs[lo] - x) <= Math.abs(xs[hi] - x) ? lo : hi;
  }

  // ---------------------------------------------------------------------------------------
  // Tooltip and the crosshair shared by every step chart

  const tip = document.getElementById('tip');
  function showTip(html, cx, cy) {
    tip.innerHTML = html;
    tip.hidden = false;
    const r = tip.getBoundingClientRect();
    let x = cx + 14, y = cy + 14;
    if (x + r.width > window.innerWidth - 8) x = cx - r.width - 14;
    if (y + r.height > window.innerHeight - 8) y = cy - r.height - 14;
    tip.style.left = Math.max(4, x) + 'px';
    tip.style.top = Math.max(4, y) + 'px';
  }
  function hideTip() { tip.hidden = true; }
  const esc = (t) => String(t).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));

  let stepCharts = [];
  // Charts share a crosshair with the charts of the same x axis (spec.axis: the step by default).
  function crosshairAt(step, axis) { for (const c of stepCharts) if (c.axis === (axis || 'step')) c.cross(step); }

  // ---------------------------------------------------------------------------------------
  // Charts against the step

  const KINDS = {
    restart: { label: 'restart', color: '#d62728' },
    deadline_kill: { label: 'deadline kill', color: '#ef8a17' },
    subtree_restart: { label: 'subtree restart', color: '#8e44ad' },
    resume: { label: 'resume', color: '#1f77b4' },
    checkpoint: { label: 'checkpoint', color: '#7b8794' },
    stop: { label: 'stop', color: '#222a3a' },
  };

  // A line chart. spec: {height, xDomain, series: [{x, y, color, width, cls, label, dots,
  // fmt}], yFmt, yMin0, yLabel, eventLines, showX}; for the compare page also bands: [{x, lo,
  // hi, color, cls}] (filled between lo and hi), marks: [{x, label, cls}] (vertical lines),
  // xFmt (x tick labels), axis (crosshair group), tipRows (most series listed by the tooltip)
  function lineChart(id, spec) {
    const box = document.getElementById(id);
    const W = Math.max(320, box.clientWidth || 900), H = spec.height;
    const m = { l: 58, r: 14, t: 10, b: spec.showX === false ? 6 : 22 };
    const series = spec.series.filter((q) => q && q.x && q.x.length);
    if (!series.length) {
      fill(id, h('div', { cls: 'empty', text: spec.empty || 'no data yet' }));
      return null;
    }
    let lo = Infinity, hi = -Infinity;
    for (const q of series) for (const v of q.y) if (finite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
    for (const b of spec.bands || []) for (const v of b.lo.concat(b.hi)) if (finite(v)) { if (v < lo) lo = v; if (v > hi) hi = v; }
    if (spec.yMin0) lo = Math.min(0, lo);
    if (spec.yDomain) [lo, hi] = spec.yDomain;
    if (!(hi > lo)) { const c = finite(lo) ? lo : 0; lo = c - (Math.abs(c) * 0.1 || 1); hi = c + (Math.abs(c) * 0.1 || 1); }
    const pad = spec.yDomain ? 0 : (hi - lo) * 0.06;
    if (!spec.yMin0 || lo < 0) lo -= pad;
    hi += pad;
    const sx = scale(spec.xDomain[0], spec.xDomain[1], m.l, W - m.r);
    const sy = scale(lo, hi, H - m.b, m.t);
    const svg = s('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}` });
    const grid = s('g', { class: 'grid' }, svg);
    const yt = niceTicks(lo, hi, Math.max(2, Math.round((H - m.t - m.b) / 42)));
    const yf = spec.yFmt || num;
    for (const v of yt) {
      const y = sy(v).toFixed(1);
      s('line', { x1: m.l, x2: W - m.r, y1: y, y2: y }, grid);
      s('text', { x: m.l - 7, y: +y + 3.5, 'text-anchor': 'end' }, svg).textContent = yf(v);
    }
    const xt = niceTicks(spec.xDomain[0], spec.xDomain[1], Math.max(2, Math.round((W - m.l - m.r) / 110)));
    for (const v of xt) {
      const x = sx(v).toFixed(1);
      s('line', { x1: x, x2: x, y1: m.t, y2: H - m.b }, grid);
      if (spec.showX !== false) s('text', { x, y: H - 6, 'text-anchor': 'middle' }, svg).textContent = (spec.xFmt || int)(v);
    }
    s('path', { class: 'axis', d: `M${m.l},${m.t}V${H - m.b}H${W - m.r}`, fill: 'none' }, svg);
    if (spec.yLabel) {
      const t = s('text', { class: 'title', x: 12, y: (m.t + H - m.b) / 2, 'text-anchor': 'middle',
        transform: `rotate(-90 12 ${(m.t + H - m.b) / 2})` }, svg);
      t.textContent = spec.yLabel;
    }
    for (const e of spec.eventLines || []) {
      const k = KINDS[e.kind];
      if (!k || e.kind === 'checkpoint') continue;
      const x = sx(e.step).toFixed(1);
      s('line', { class: 'evline', x1: x, x2: x, y1: m.t, y2: H - m.b, stroke: k.color }, svg);
    }
    const clip = 'c' + Math.random().toString(36).slice(2);
    s('rect', { x: m.l, y: m.t - 2, width: W - m.l - m.r, height: H - m.t - m.b + 4 }, s('clipPath', { id: clip }, svg));
    const plot = s('g', { 'clip-path': `url(#${clip})` }, svg);
    for (const b of spec.bands || []) {
      if (!b.x.length) continue;
      const up = b.x.map((x, i) => sx(x).toFixed(1) + ',' + sy(b.hi[i]).toFixed(1));
      const down = b.x.map((x, i) => sx(x).toFixed(1) + ',' + sy(b.lo[i]).toFixed(1)).reverse();
      s('polygon', { class: b.cls, points: up.concat(down).join(' '), fill: b.color, opacity: 0.18, stroke: 'none' }, plot);
    }
    for (const mk of spec.marks || []) {
      const x = sx(mk.x).toFixed(1);
      s('line', { class: mk.cls, x1: x, x2: x, y1: m.t, y2: H - m.b, stroke: '#c8312b', 'stroke-width': 1.5, 'stroke-dasharray': '4 3' }, svg);
      s('text', { class: mk.cls + '-label', x: +x + 4, y: m.t + 10, fill: '#c8312b' }, svg).textContent = mk.label;
    }
    for (const q of series) {
      const pts = new Array(q.x.length);
      for (let i = 0; i < q.x.length; ++i) pts[i] = sx(q.x[i]).toFixed(1) + ',' + sy(q.y[i]).toFixed(1);
      s('polyline', { class: q.cls, points: pts.join(' '), stroke: q.color, 'stroke-width': q.width || 1.5,
        'data-n': q.n, opacity: q.opacity }, plot);
      if (q.dots && q.x.length <= 400)
        for (let i = 0; i < q.x.length; ++i)
          s('circle', { cx: sx(q.x[i]).toFixed(1), cy: sy(q.y[i]).toFixed(1), r: 2.6, fill: '#fff', stroke: q.color, 'stroke-width': 1.5 }, plot);
    }
    const cross = s('line', { class: 'cross', y1: m.t, y2: H - m.b, visibility: 'hidden' }, svg);
    const hl = series.map((q) => s('circle', { r: 3.5, fill: q.color, visibility: 'hidden', 'pointer-events': 'none' }, svg));
    const overlay = s('rect', { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, fill: 'transparent' }, svg);
    const chart = {
      axis: spec.axis || 'step',
      cross(step) {
        if (step == null) {
          cross.setAttribute('visibility', 'hidden');
          for (const c of hl) c.setAttribute('visibility', 'hidden');
          return;
        }
        const x = sx(step);
        cross.setAttribute('x1', x), cross.setAttribute('x2', x), cross.setAttribute('visibility', 'visible');
        series.forEach((q, i) => {
          const j = nearest(q.x, step);
          const near = j >= 0 && Math.abs(sx(q.x[j]) - x) < 12;
          hl[i].setAttribute('visibility', near ? 'visible' : 'hidden');
          if (near) hl[i].setAttribute('cx', sx(q.x[j])), hl[i].setAttribute('cy', sy(q.y[j]));
        });
      },
      rows(step) {
        return series.map((q) => {
          const j = nearest(q.x, step);
          return j < 0 ? null : { label: q.label, color: q.color, step: q.x[j], value: (q.fmt || yf)(q.y[j]) };
        }).filter(Boolean);
      },
    };
    overlay.addEventListener('mousemove', (ev) => {
      const r = svg.getBoundingClientRect();
      const step = spec.axis ? sx.inv(ev.clientX - r.left) : Math.round(sx.inv(ev.clientX - r.left));
      crosshairAt(step, spec.axis);
      const all = chart.rows(step), more = all.length - (spec.tipRows || all.length);
      const rows = more > 0 ? all.slice(0, spec.tipRows) : all;
      const st = rows.length ? rows[0].step : step;
      const xf = spec.xFmt || ((v) => 'step ' + int(v));
      showTip(`<b>${esc(xf(st))}</b><table>` + rows.map((r2) =>
        `<tr><td><i style="background:${r2.color}"></i>${esc(r2.label)}${r2.step !== st ? ` <span class="t">(${esc(xf(r2.step))})</span>` : ''}</td><td>${esc(r2.value)}</td></tr>`).join('') + '</table>' + (more > 0 ? `<div class="t">and ${more} more</div>` : ''), ev.clientX, ev.clientY);
    });
    overlay.addEventListener('mouseleave', () => { crosshairAt(null, spec.axis); hideTip(); });
    const legend = spec.legend === false ? null : h('div', { cls: 'legend-inline' },
      series.map((q) => h('span', null, h('i', { cls: q.dots ? 'dot' : null, style: `background:${q.color}` }), q.label)));
    fill(id, legend, svg);
    stepCharts.push(chart);
    return chart;
  }

  // Stacked shares (0..1) against the step.
  function shareChart(id, share, xDomain) {
    const layers = [
      { key: 'compute', label: 'compute', color: '#3b7dd8' },
      { key: 'fold', label: 'fold (exact sum)', color: '#23a4a0' },
      { key: 'reduce', label: 'reduce (merge partial sums)', color: '#f0a030' },
      { key: 'wait', label: 'wait (idle in the step)', color: '#c9cfd9' },
    ].filter((l) => l.key !== 'wait' || share.wait_known);
    const box = document.getElementById(id);
    if (!share || !share.x || !share.x.length) { fill(id, h('div', { cls: 'empty', text: 'no timing yet' })); return; }
    const W = Math.max(320, box.clientWidth || 900), H = 150, m = { l: 58, r: 14, t: 8, b: 22 };
    const sx = scale(xDomain[0], xDomain[1], m.l, W - m.r), sy = scale(0, 1, H - m.b, m.t);
    const svg = s('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}` });
    const xs = share.x, n = xs.length;
    // With one point per step, each point stands for the step before it too.
    const x0 = (i) => (i === 0 ? Math.max(xDomain[0], xs[0] - 1) : xs[i - 1]);
    const base = new Float64Array(n);
    for (const l of layers) {
      const v = share[l.key];
      let top = '', bot = '';
      for (let i = 0; i < n; ++i) {
        const y0 = sy(base[i]).toFixed(1), y1 = sy(base[i] + v[i]).toFixed(1);
        top += `${sx(x0(i)).toFixed(1)},${y1} ${sx(xs[i]).toFixed(1)},${y1} `;
        bot = `${sx(xs[i]).toFixed(1)},${y0} ${sx(x0(i)).toFixed(1)},${y0} ` + bot;
        base[i] += v[i];
      }
      s('polygon', { points: top + bot, fill: l.color, class: 'share-' + l.key }, svg);
    }
    for (const v of [0, 0.25, 0.5, 0.75, 1]) {
      s('text', { x: m.l - 7, y: sy(v) + 3.5, 'text-anchor': 'end' }, svg).textContent = Math.round(v * 100) + '%';
      s('line', { x1: m.l, x2: W - m.r, y1: sy(v), y2: sy(v), stroke: 'rgba(255,255,255,.55)' }, svg);
    }
    for (const v of niceTicks(xDomain[0], xDomain[1], Math.max(2, Math.round((W - m.l - m.r) / 110))))
      s('text', { x: sx(v), y: H - 6, 'text-anchor': 'middle' }, svg).textContent = int(v);
    const cross = s('line', { class: 'cross', y1: m.t, y2: H - m.b, visibility: 'hidden' }, svg);
    const overlay = s('rect', { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, fill: 'transparent' }, svg);
    const chart = {
      cross(step) {
        if (step == null) { cross.setAttribute('visibility', 'hidden'); return; }
        cross.setAttribute('x1', sx(step)), cross.setAttribute('x2', sx(step)), cross.setAttribute('visibility', 'visible');
      },
    };
    overlay.addEventListener('mousemove', (ev) => {
      const r = svg.getBoundingClientRect();
      const step = Math.round(sx.inv(ev.clientX - r.left));
      crosshairAt(step);
      let j = 0;
      while (j < n - 1 && xs[j] < step) ++j;
      const span = share.per_step ? `step ${int(xs[j])}` : `steps ${int(x0(j) + 1)}–${int(xs[j])}`;
      showTip(`<b>${span}</b><table>` + layers.slice().reverse().map((l) =>
        `<tr><td><i style="background:${l.color}"></i>${l.label}</td><td>${(share[l.key][j] * 100).toFixed(1)}%</td></tr>`).join('') + '</table>', ev.clientX, ev.clientY);
    });
    overlay.addEventListener('mouseleave', () => { crosshairAt(null); hideTip(); });
    fill(id, h('div', { cls: 'legend-inline' }, layers.map((l) => h('span', null, h('i', { cls: 'sq', style: `background:${l.color}` }), l.label))), svg);
    stepCharts.push(chart);
  }

  // One lane per kind of event, on the same step axis as the loss.
  function eventLane(id, events, xDomain) {
    const kinds = Object.keys(KINDS).filter((k) => events.some((e) => e.kind === k));
    if (!kinds.length) { fill(id); return; }
    const box = document.getElementById(id);
    const W = Math.max(320, box.clientWidth || 900), lane = 16, m = { l: 58, r: 14 };
    const H = kinds.length * lane + 6;
    const sx = scale(xDomain[0], xDomain[1], m.l, W - m.r);
    const svg = s('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: 'events' });
    kinds.forEach((k, row) => {
      const y = 3 + row * lane + lane / 2, c = KINDS[k].color;
      s('line', { x1: m.l, x2: W - m.r, y1: y, y2: y, stroke: '#eef1f5' }, svg);
      s('text', { x: m.l - 7, y: y + 3.5, 'text-anchor': 'end' }, svg).textContent = KINDS[k].label;
      for (const e of events) {
        if (e.kind !== k) continue;
        const x = sx(e.step);
        let mk;
        if (k === 'restart') mk = s('circle', { cx: x, cy: y, r: 4.2, fill: c }, svg);
        else if (k === 'deadline_kill') mk = s('path', { d: `M${x},${y - 5}L${x + 5},${y + 4}L${x - 5},${y + 4}Z`, fill: c }, svg);
        else if (k === 'subtree_restart') mk = s('path', { d: `M${x},${y - 5}L${x + 5},${y}L${x},${y + 5}L${x - 5},${y}Z`, fill: c }, svg);
        else if (k === 'resume') mk = s('rect', { x: x - 1.5, y: y - 6, width: 3, height: 12, fill: c }, svg);
        else if (k === 'checkpoint') mk = s('rect', { x: x - 3, y: y - 3, width: 6, height: 6, fill: c, rx: 1 }, svg);
        else mk = s('path', { d: `M${x - 4},${y - 4}L${x + 4},${y + 4}M${x + 4},${y - 4}L${x - 4},${y + 4}`, stroke: c, 'stroke-width': 2 }, svg);
        mk.setAttribute('class', 'ev ev-' + k);
        const txt = `<b>${esc(KINDS[k].label)}</b> at step ${int(e.step)}` + (e.count > 1 ? ` ×${e.count}` : '') + (e.detail ? `<br><span class="t">${esc(e.detail)}</span>` : '');
        mk.addEventListener('mousemove', (ev) => showTip(txt, ev.clientX, ev.clientY));
        mk.addEventListener('mouseleave', hideTip);
      }
    });
    fill(id, svg);
  }

  // ---------------------------------------------------------------------------------------
  // The sphere tree: a sunburst, the root in the centre and one ring per level; each sphere's
  // arc is proportional to the spheres at the end of its subtree, so 1 -> 12 -> 144 -> 1584
  // fills every ring. Colour = compute time; a red ring and dot = restarted; a band outside
  // = the subtree of a remote host (spheres.json "host" or "node").

  const RAMP = ['#e6f0fa', '#bcd6f0', '#83b3e3', '#4a8bd0', '#2563b0', '#123d7d'];
  function rampColor(t) {
    t = Math.max(0, Math.min(1, t)) * (RAMP.length - 1);
    const i = Math.min(RAMP.length - 2, Math.floor(t)), f = t - i;
    const a = parseInt(RAMP[i].slice(1), 16), b = parseInt(RAMP[i + 1].slice(1), 16);
    const mix = (sh) => Math.round(((a >> sh) & 255) * (1 - f) + ((b >> sh) & 255) * f);
    return `rgb(${mix(16)},${mix(8)},${mix(0)})`;
  }
  const HOSTS = ['#e45756', '#54a24b', '#b279a2', '#f58518', '#4c78a8', '#72b7b2', '#eeca3b', '#9d755d'];
  const hostOf = (sp) => (sp && (sp.host != null ? String(sp.host) : sp.node != null ? String(sp.node) : null));

  const tree = { focus: null, sig: null, data: null, sort: { key: 'id', dir: 1 }, all: false };

  function arcPath(r0, r1, a0, a1) {
    const p = (r, a) => `${(r * Math.sin(a)).toFixed(2)},${(-r * Math.cos(a)).toFixed(2)}`;
    if (a1 - a0 >= 2 * Math.PI - 1e-6) {
      const ring = (r, sweep) => `M0,${-r}A${r},${r} 0 1 ${sweep} 0,${r}A${r},${r} 0 1 ${sweep} 0,${-r}Z`;
      return r0 > 0 ? ring(r1, 1) + ring(r0, 0) : ring(r1, 1);
    }
    const large = a1 - a0 > Math.PI ? 1 : 0;
    if (r0 <= 0) return `M0,0L${p(r1, a0)}A${r1},${r1} 0 ${large} 1 ${p(r1, a1)}Z`;
    return `M${p(r1, a0)}A${r1},${r1} 0 ${large} 1 ${p(r1, a1)}L${p(r0, a1)}A${r0},${r0} 0 ${large} 0 ${p(r0, a0)}Z`;
  }

  function sphereTip(sp, maxc) {
    const host = hostOf(sp);
    const rows = [
      ['level', sp.level], ['parent', sp.parent < 0 ? '– (the root)' : sp.parent], ['symmetry group', sp.group],
      host != null ? ['host', host] : null,
      ['shards', int(sp.shards)], ['compute', ms(sp.compute_ms)], ['fold', ms(sp.fold_ms)], ['reduce', ms(sp.reduce_ms)],
      ['wait', ms(sp.wait_ms)], ['restarts', int(sp.restarts || 0)],
      sp.deadline_kills != null ? ['deadline kills', int(sp.deadline_kills)] : null,
      sp.statistics ? ['statistics', sp.statistics] : null,
    ].filter(Boolean);
    const load = maxc > 0 && finite(sp.compute_ms) ? ` · ${Math.round((100 * sp.compute_ms) / maxc)}% of the busiest` : '';
    return `<b>sphere ${esc(sp.id)}</b><span class="t">${load}</span><table>` +
      rows.map(([k, v]) => `<tr><td class="t">${esc(k)}</td><td>${esc(v)}</td></tr>`).join('') + '</table>';
  }

  function drawTree(spheres) {
    const byId = new Map(), kids = new Map();
    for (const sp of spheres) { byId.set(sp.id, sp); kids.set(sp.id, []); }
    const roots = [];
    for (const sp of spheres) (byId.has(sp.parent) && sp.parent !== sp.id ? kids.get(sp.parent) : roots).push(sp);
    for (const k of kids.values()) k.sort((a, b) => a.id - b.id);
    const leaves = new Map();
    const countLeaves = (sp) => {
      const ks = kids.get(sp.id);
      let n = 0;
      for (const k of ks) n += countLeaves(k);
      n = Math.max(1, n);
      leaves.set(sp.id, n);
      return n;
    };
    roots.forEach(countLeaves);
    if (tree.focus != null && !byId.has(tree.focus)) tree.focus = null;
    const starts = tree.focus != null ? [byId.get(tree.focus)] : roots;
    const placed = [];
    let maxDepth = 0;
    const place = (sp, a0, a1, depth) => {
      placed.push({ sp, a0, a1, depth });
      maxDepth = Math.max(maxDepth, depth);
      let a = a0;
      const total = leaves.get(sp.id);
      for (const k of kids.get(sp.id)) {
        const span = ((a1 - a0) * leaves.get(k.id)) / total;
        place(k, a, a + span, depth + 1);
        a += span;
      }
    };
    const single = starts.length === 1;
    {
      const total = starts.reduce((t, sp) => t + leaves.get(sp.id), 0);
      let a = 0;
      for (const sp of starts) {
        const span = (2 * Math.PI * leaves.get(sp.id)) / total;
        place(sp, a, a + span, single ? 0 : 1);
        a += span;
      }
    }
    const members = placed.map((p) => p.sp);
    const computing = spheres.filter((sp) => finite(sp.compute_ms));
    const maxc = Math.max(0, ...computing.map((sp) => sp.compute_ms));
    const hosts = [...new Set(spheres.map(hostOf).filter((x) => x != null))];

    const box = document.getElementById('tree');
    // Small trees get a small drawing; from about 150 spheres on, the full width.
    const size = Math.max(280, Math.min(600, box.clientWidth || 600, 240 + 30 * Math.sqrt(spheres.length)));
    const R = size / 2 - (hosts.length ? 40 : 12);
    const c0 = maxDepth === 0 ? R : Math.max(36, R * 0.18);
    const ring = maxDepth === 0 ? 0 : (R - c0) / maxDepth;
    const radii = (d) => (d === 0 ? [0, c0] : [c0 + (d - 1) * ring + 1, c0 + d * ring]);
    const svg = s('svg', { width: size, height: size, viewBox: `${-size / 2} ${-size / 2} ${size} ${size}` });
    const g = s('g', null, svg), marks = s('g', null, svg);
    const idle = '#eef0f4';
    for (const p of placed) {
      const sp = p.sp;
      const [r0, r1] = radii(p.depth);
      const arcLen = (p.a1 - p.a0) * r1;
      const busy = finite(sp.compute_ms) && (sp.shards || 0) > 0;
      const path = s('path', {
        class: 'sphere' + ((sp.restarts || 0) > 0 ? ' restarted' : ''),
        d: arcPath(r0, r1, p.a0, p.a1), 'fill-rule': 'evenodd',
        fill: busy ? rampColor(maxc > 0 ? sp.compute_ms / maxc : 0) : idle,
        stroke: '#fff', 'stroke-width': Math.min(1, arcLen / 5).toFixed(2),
        'data-id': sp.id,
      }, g);
      path.addEventListener('mousemove', (ev) => showTip(sphereTip(sp, maxc), ev.clientX, ev.clientY));
      path.addEventListener('mouseleave', hideTip);
      path.addEventListener('click', () => {
        if (p.depth === 0 && single && tree.focus != null) tree.focus = byId.has(sp.parent) ? sp.parent : null;
        else if (kids.get(sp.id).length) tree.focus = sp.id;
        else return;
        hideTip();
        renderTree(true);
      });
      if ((sp.restarts || 0) > 0 || (sp.deadline_kills || 0) > 0) {
        s('path', { d: arcPath(r0 + 0.6, r1 - 0.6, p.a0, p.a1), fill: 'none', stroke: '#d62728', 'stroke-width': 1.6, 'pointer-events': 'none' }, marks);
        const am = (p.a0 + p.a1) / 2, rr = p.depth === 0 && single ? 0 : r1 + 4;
        const dot = s('circle', { class: 'restart-mark', cx: rr * Math.sin(am), cy: -rr * Math.cos(am), r: 3.2, fill: '#d62728', stroke: '#fff', 'stroke-width': 0.8 }, marks);
        dot.addEventListener('mousemove', (ev) => showTip(sphereTip(sp, maxc), ev.clientX, ev.clientY));
        dot.addEventListener('mouseleave', hideTip);
      }
    }
    // Host bands: the subtree of a sphere whose host differs from its parent's.
    if (hosts.length) {
      for (const p of placed) {
        const hname = hostOf(p.sp);
        if (hname == null || hname === hostOf(byId.get(p.sp.parent))) continue;
        const col = HOSTS[hosts.indexOf(hname) % HOSTS.length];
        s('path', { class: 'host-band', d: arcPath(R + 6, R + 12, p.a0, p.a1), fill: col }, g);
        const am = (p.a0 + p.a1) / 2, rr = R + 22;
        const t = s('text', { class: 'host-label', x: rr * Math.sin(am), y: -rr * Math.cos(am) + 4, fill: col,
          'text-anchor': Math.sin(am) > 0.2 ? 'start' : Math.sin(am) < -0.2 ? 'end' : 'middle' }, g);
        t.textContent = hname;
      }
    }
    const focusSp = tree.focus != null ? byId.get(tree.focus) : null;
    if (single) {
      const t = s('text', { class: 'center-label', x: 0, y: 4, 'text-anchor': 'middle' }, svg);
      t.textContent = `sphere ${starts[0].id}`;
      const root = placed[0] && placed[0].sp;
      if (root && maxc > 0 && finite(root.compute_ms) && (root.shards || 0) > 0 && root.compute_ms / maxc > 0.5) t.style.fill = '#fff';
    }
    fill('tree', svg);

    // Breadcrumbs.
    const crumbs = [h('a', { text: 'all spheres', onclick: () => { tree.focus = null; renderTree(true); } })];
    if (focusSp) {
      const chain = [];
      for (let x = focusSp; x; x = byId.get(x.parent)) { chain.unshift(x); if (chain.length > 64) break; }
      for (const x of chain) {
        crumbs.push(' › ');
        crumbs.push(x === focusSp ? h('b', { text: `sphere ${x.id}` })
          : h('a', { text: `sphere ${x.id}`, onclick: () => { tree.focus = x.id; renderTree(true); } }));
      }
      crumbs.push(h('span', { cls: 'badge', text: `${members.length} spheres` }));
    } else {
      crumbs.push(h('span', { cls: 'note', text: ' — click a sphere to look into its subtree' }));
    }
    fill('tree-crumbs', crumbs);

    // Legend.
    const mk = (svgInner) => { const e = s('svg', { width: 12, height: 12, viewBox: '0 0 12 12' }); e.innerHTML = svgInner; return e; };
    fill('tree-legend',
      h('div', { text: 'compute time per sphere' }),
      h('div', { cls: 'ramp', style: `background:linear-gradient(90deg,${RAMP.join(',')})` }),
      h('div', { cls: 'ends' }, h('span', { text: '0' }), h('span', { text: ms(maxc) })),
      h('div', { cls: 'keys' },
        h('span', null, mk('<rect x="1" y="1" width="10" height="10" rx="2" fill="#eef0f4" stroke="#cfd5de"/>'), 'no shards'),
        h('span', null, mk('<circle cx="6" cy="6" r="4" fill="#d62728"/>'), 'restarted'),
        hosts.length ? h('span', null, mk('<rect x="1" y="4" width="10" height="4" fill="#e45756"/>'), 'remote host') : null));

    // Per level.
    const levels = new Map();
    for (const sp of members) {
      const L = levels.get(sp.level) || { n: 0, busy: 0, shards: 0, compute: 0, wait: 0, restarts: 0 };
      L.n++; L.busy += (sp.shards || 0) > 0 ? 1 : 0; L.shards += sp.shards || 0;
      L.compute += sp.compute_ms || 0; L.wait += sp.wait_ms || 0; L.restarts += sp.restarts || 0;
      levels.set(sp.level, L);
    }
    const lt = h('table', { cls: 't' }, h('tr', null, ['level', 'spheres', 'computing', 'shards', 'compute', 'wait', 'restarts'].map((c, i) => h('th', { cls: i ? 'num' : null, text: c }))));
    for (const [lv, L] of [...levels.entries()].sort((a, b) => a[0] - b[0]))
      lt.append(h('tr', { cls: L.restarts ? 'hot' : null }, h('td', { text: lv }), h('td', { cls: 'num', text: int(L.n) }),
        h('td', { cls: 'num', text: int(L.busy) }), h('td', { cls: 'num', text: int(L.shards) }),
        h('td', { cls: 'num', text: ms(L.compute) }), h('td', { cls: 'num', text: ms(L.wait) }), h('td', { cls: 'num', text: int(L.restarts) })));
    fill('level-table', lt);

    // Every sphere (of the subtree in focus), sortable.
    const cols = [
      ['id', 'sphere'], ['level', 'level'], ['parent', 'parent'], ['group', 'group'],
      hosts.length ? ['host', 'host'] : null,
      ['shards', 'shards'], ['compute_ms', 'compute'], ['fold_ms', 'fold'], ['reduce_ms', 'reduce'], ['wait_ms', 'wait'],
      ['restarts', 'restarts'],
      spheres.some((sp) => sp.deadline_kills != null) ? ['deadline_kills', 'deadline kills'] : null,
    ].filter(Boolean);
    const rows = members.slice();
    const { key, dir } = tree.sort;
    const val = (sp) => (key === 'host' ? hostOf(sp) || '' : sp[key] == null ? -Infinity : sp[key]);
    rows.sort((a, b) => (val(a) < val(b) ? -dir : val(a) > val(b) ? dir : a.id - b.id));
    const limit = tree.all ? rows.length : Math.min(rows.length, 60);
    const table = h('table', { cls: 't', id: 'spheres' }, h('tr', null, cols.map(([k, label]) => h('th', {
      cls: 'sortable' + (k === 'id' || k === 'host' ? '' : ' num'),
      text: label + (k === key ? (dir > 0 ? ' ▲' : ' ▼') : ''),
      onclick: () => { tree.sort = { key: k, dir: k === key ? -dir : k === 'id' ? 1 : -1 }; renderTree(true); },
    }))));
    const isMs = (k) => k.endsWith('_ms');
    for (let i = 0; i < limit; ++i) {
      const sp = rows[i];
      table.append(h('tr', { cls: (sp.restarts || 0) > 0 ? 'hot' : null, 'data-id': sp.id }, cols.map(([k]) => h('td', {
        cls: k === 'id' || k === 'host' ? null : 'num',
        text: k === 'host' ? hostOf(sp) || '' : k === 'parent' && sp.parent < 0 ? '–' : isMs(k) ? ms(sp[k]) : int(sp[k]),
      }))));
    }
    fill('sphere-table', h('div', { cls: 'scroll' }, table),
      rows.length > limit ? h('div', { cls: 'more' }, h('button', { text: `show all ${int(rows.length)} spheres`, onclick: () => { tree.all = true; renderTree(true); } })) : null);

    const restarted = spheres.filter((sp) => (sp.restarts || 0) > 0);
    const shape = [...levels.keys()].sort((a, b) => a - b).map((lv) => int(levels.get(lv).n)).join(' → ');
    fill('tree-figures', `${int(spheres.length)} spheres: ${shape}` +
      (restarted.length ? ` · ${restarted.length} restarted (${int(restarted.reduce((t, sp) => t + sp.restarts, 0))} restarts)` : '') +
      (hosts.length ? ` · ${hosts.length} hosts` : ''));
  }

  function renderTree(force) {
    const spheres = tree.data;
    if (!Array.isArray(spheres) || !spheres.length) {
      fill('tree', h('div', { cls: 'empty', text: 'spheres.json is written during the run; none yet' }));
      fill('tree-legend'), fill('level-table'), fill('sphere-table'), fill('tree-crumbs'), fill('tree-figures');
      return;
    }
    if (!force && tree.sig === tree.drawnSig) return;
    tree.drawnSig = tree.sig;
    drawTree(spheres);
  }

  // ---------------------------------------------------------------------------------------
  // Tables of key/value pairs

  function flatten(obj, prefix, out) {
    for (const k of Object.keys(obj)) {
      const v = obj[k], key = prefix ? prefix + '.' + k : k;
      if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, key, out);
      else out.push([key, v]);
    }
    return out;
  }
  function kvTable(id, obj, emptyText) {
    if (!obj || typeof obj !== 'object') { fill(id, h('div', { cls: 'empty', text: emptyText })); return; }
    const t = h('table', { cls: 't' });
    for (const [k, v] of flatten(obj, '', [])) {
      const shown = v == null ? '–' : typeof v === 'string' ? v : Array.isArray(v) ? JSON.stringify(v) : String(v);
      t.append(h('tr', { 'data-key': k }, h('td', { cls: 'key', text: k.replace(/^extra\./, '') }), h('td', { cls: 'val', text: shown === '' ? '""' : shown })));
    }
    fill(id, t);
  }

  // ---------------------------------------------------------------------------------------
  // The whole page

  let last = null;

  // The live page redraws a chart only while it is on screen (or near): one that scrolled away
  // is drawn again when it comes back. A page left open beside a training costs less CPU so.
  const pendingDraw = new Map();
  const observer = MODE === 'live' && 'IntersectionObserver' in window
    ? new IntersectionObserver((entries) => {
      for (const e of entries) {
        if (!e.isIntersecting) continue;
        const fn = pendingDraw.get(e.target.id);
        if (fn) { pendingDraw.delete(e.target.id); fn(); }
      }
    }, { rootMargin: '200px 0px' })
    : null;
  function whenVisible(id, draw) {
    const box = document.getElementById(id);
    if (observer) {
      if (!box.dataset.observed) { observer.observe(box); box.dataset.observed = '1'; }
      const r = box.getBoundingClientRect();
      if (box.childNodes.length && (r.bottom < -200 || r.top > window.innerHeight + 200)) {
        pendingDraw.set(id, draw);
        return;
      }
    }
    pendingDraw.delete(id);
    draw();
  }
  // Sections redrawn only when their input changed (the live page redraws once a second).
  const drawn = {};
  function changed(key, value) {
    const sig = JSON.stringify(value === undefined ? null : value);
    if (drawn[key] === sig) return false;
    drawn[key] = sig;
    return true;
  }

  // The steps done so far (the header's bar shows them against the planned steps).
  function xDomainOf(d) {
    let hi = (d.stats || {}).last_step || 0;
    for (const e of d.events || []) hi = Math.max(hi, e.step);
    return [0, Math.max(1, hi)];
  }

  function renderHeader(d) {
    const pr = d.progress || {}, st = d.status || {};
    document.getElementById('run-name').textContent = d.meta ? d.meta.run_dir : '';
    const stEl = document.getElementById('status');
    if (!stEl.classList.contains('unreachable')) {
      stEl.className = 'status ' + (st.state || '');
      stEl.textContent = st.text || '';
      stEl.title = st.text || '';
    }
    const f = (k, v) => h('span', null, h('span', { cls: 'k', text: k }), h('b', { text: v }));
    const prog = fill('progress',
      f('step', `${int(pr.step)}${finite(pr.steps) ? ' / ' + int(pr.steps) : ''}`),
      f('loss', num(pr.loss)), f('val', num(pr.val_loss)), f('tok/s', int(pr.tokens_per_s)),
      st.state === 'running' ? f('ETA', dur(pr.eta_s)) : null,
      f('train time', dur(pr.train_s)),
      MODE === 'live' ? h('span', { id: 'age' }) : h('span', null, h('span', { cls: 'k', text: 'report of' }), h('b', { text: d.meta ? d.meta.generated_at : '' })));
    prog.dataset.step = pr.step || 0;
    const frac = finite(pr.steps) && pr.steps > 0 ? Math.min(1, (pr.step || 0) / pr.steps) : 0;
    document.getElementById('progress-fill').style.width = (frac * 100).toFixed(2) + '%';
  }

  function card(label, value, sub, cls) {
    return h('div', { cls: 'fig' + (cls ? ' ' + cls : '') }, h('div', { cls: 'label', text: label }), h('div', { cls: 'value', text: value }), sub ? h('div', { cls: 'sub', text: sub }) : null);
  }

  function renderCards(d) {
    const st = d.stats || {}, pr = d.progress || {}, sm = d.summary || {}, cf = d.config || {};
    const L = st.loss || {}, V = st.val_loss || {}, B = st.val_bpb || {};
    const at = (e) => (e && e.step != null ? `step ${int(e.step)}` : '');
    const spheres = Array.isArray(d.spheres) ? d.spheres.length : sm.spheres || cf.workers;
    const faults = (st.restarts || 0) + (st.deadline_kills || 0) + (st.subtree_restarts || 0);
    const totalRestarts = finite(sm.restarts) ? sm.restarts : st.restarts;
    const ckName = sm.checkpoint ? String(sm.checkpoint).split('/').pop() : '';
    fill('cards',
      card('steps', int(pr.step), [finite(pr.steps) ? `of ${int(pr.steps)}` : null, finite(pr.train_s) ? `${dur(pr.train_s)} of training` : null].filter(Boolean).join(' · ')),
      card('loss (last)', num(L.last && L.last.value), L.min ? `min ${num(L.min.value)} at ${at(L.min)}` : ''),
      card('validation loss', num(V.last && V.last.value), V.min ? `min ${num(V.min.value)} at ${at(V.min)}` : 'no evaluation yet'),
      card('bits per byte', num(B.last && B.last.value), B.last ? `validation, ${at(B.last)}` : ''),
      card('tokens / s', int(st.tokens_per_s_median), `median; step ${ms(st.step_ms_median)} (p95 ${ms(st.step_ms_p95)})`),
      card('spheres', int(spheres), [cf.backend, cf.extra && cf.extra.fanout ? `fan-out ${cf.extra.fanout}` : null, cf.extra && cf.extra.threads ? `${cf.extra.threads} threads` : null].filter(Boolean).join(' · ')),
      card('restarts', int(totalRestarts), `deadline kills ${int(finite(sm.deadline_kills) ? sm.deadline_kills : st.deadline_kills)} · subtree restarts ${int(finite(sm.subtree_restarts) ? sm.subtree_restarts : st.subtree_restarts)}`, faults > 0 || totalRestarts > 0 ? 'alert' : null),
      card('checkpoints', int((d.events || []).filter((e) => e.kind === 'checkpoint').reduce((t, e) => t + e.count, 0)), ckName ? `last: ${ckName}` : ''),
      h('div', { cls: 'fig hash' }, h('div', { cls: 'label', text: 'final weights sha256' }), h('div', { cls: 'value', id: 'weights-hash', text: sm.weights_sha256 || (d.status && d.status.state === 'running' ? 'when the run ends' : '–') })));
  }

  function renderNotices(d) {
    fill('notices', (d.notices || []).map((n) => h('div', { cls: 'notice ' + n.level, text: n.text })));
  }

  function render(d) {
    last = d;
    stepCharts = [];
    const se = d.series || {}, st = d.stats || {};
    const xd = xDomainOf(d);
    const ev = d.events || [];
    renderHeader(d);
    renderNotices(d);
    renderCards(d);

    const L = st.loss || {}, V = st.val_loss || {};
    fill('loss-figures', L.last ? `last ${num(L.last.value)} · min ${num(L.min.value)} (step ${int(L.min.step)})` + (V.last ? ` · validation last ${num(V.last.value)} · min ${num(V.min.value)} (step ${int(V.min.step)})` : '') : '');
    const lossSeries = [
      se.loss && { ...se.loss, color: '#9cc3e8', width: 1, cls: 's-loss', label: 'training loss' },
      se.loss_smooth && { ...se.loss_smooth, color: '#1f5fbf', width: 2.2, cls: 's-loss-smooth', label: `smoothed (EMA, span ${se.loss_smooth.span})` },
      se.val_loss && se.val_loss.x.length ? { ...se.val_loss, color: '#e0662a', width: 1.8, cls: 's-val', label: 'validation loss', dots: true } : null,
    ];
    whenVisible('chart-loss', () => lineChart('chart-loss', { height: 300, xDomain: xd, series: lossSeries, yLabel: 'loss', eventLines: ev, showX: false, empty: 'no steps yet' }));
    whenVisible('chart-events', () => eventLane('chart-events', ev, xd));
    whenVisible('chart-lr', () => lineChart('chart-lr', { height: 96, xDomain: xd, series: [se.lr && { ...se.lr, color: '#7b61c9', cls: 's-lr', label: 'learning rate' }], yLabel: 'lr', yMin0: true, yFmt: (v) => (v === 0 ? '0' : v.toExponential(1)), legend: false }));
    const n = se.loss ? se.loss.n : 0, points = se.loss ? se.loss.x.length : 0;
    fill('loss-note', n > points
      ? `${int(n)} steps; each line is drawn from ${int(points)} points (the smallest and largest value of each of ${int(points / 2)} step buckets). The figures above are exact.`
      : n ? `${int(n)} steps, every step drawn.` : '');

    const Bb = st.val_bpb || {};
    fill('bpb-figures', Bb.last ? `last ${num(Bb.last.value)} · min ${num(Bb.min.value)}` : '');
    whenVisible('chart-bpb', () => lineChart('chart-bpb', { height: 180, xDomain: xd, series: [se.val_bpb && se.val_bpb.x.length ? { ...se.val_bpb, color: '#e0662a', cls: 's-bpb', label: 'validation bits per byte', dots: true } : null], yLabel: 'bits / byte', legend: false, empty: 'no evaluation yet' }));
    whenVisible('chart-grad', () => lineChart('chart-grad', { height: 180, xDomain: xd, series: [se.grad_norm && { ...se.grad_norm, color: '#2a9d68', width: 1, cls: 's-grad', label: 'gradient norm (before clipping)' }], yLabel: 'norm', yMin0: true, legend: false }));

    fill('speed-figures', `median ${int(st.tokens_per_s_median)} tokens/s · step ${ms(st.step_ms_median)} (p95 ${ms(st.step_ms_p95)})`);
    whenVisible('chart-tps', () => lineChart('chart-tps', { height: 150, xDomain: xd, series: [se.tokens_per_s && { ...se.tokens_per_s, color: '#2f74c0', width: 1, cls: 's-tps', label: 'tokens / s', fmt: int }], yLabel: 'tokens / s', yFmt: si, yMin0: true, legend: false, showX: false }));
    whenVisible('chart-ms', () => lineChart('chart-ms', { height: 150, xDomain: xd, series: [se.step_ms && { ...se.step_ms, color: '#5b6578', width: 1, cls: 's-ms', label: 'step time', fmt: ms }], yLabel: 'step ms', yMin0: true, legend: false }));
    whenVisible('chart-share', () => shareChart('chart-share', se.share || {}, xd));
    fill('share-note', se.share && se.share.x && se.share.x.length
      ? 'Shares of the time the computing spheres had in each step' + (se.share.wait_known ? ': wait = (computing spheres, at most the scheduler threads) × step time − compute − fold − reduce: idle while others worked, and while the root applied the update.' : '.') + (se.share.per_step ? '' : ' Summed over buckets of steps.')
      : '');

    if (changed('events', ev)) renderEvents(ev, d.events_bucket);
    if (changed('config', d.config)) kvTable('settings', d.config, 'no config.json yet');
    if (changed('summary', [d.summary, d.status && d.status.state])) kvTable('summary', d.summary, d.status && d.status.state === 'running' ? 'summary.json is written when the run ends' : 'no summary.json');
    if (changed('sample', [d.sample, d.status && d.status.state])) document.getElementById('sample').textContent = d.sample != null ? d.sample : d.status && d.status.state === 'running' ? '(written when the run ends)' : '(no sample.txt)';
    fill('footer', `${MODE === 'live' ? 'Live page of' : 'Report of'} ${d.meta ? d.meta.run_dir : ''} · made by cllm ${MODE === 'live' ? 'serve' : 'report'} · ${d.meta ? d.meta.generated_at : ''}`,
      MODE === 'live' ? h('span', null, ' · ', h('a', { href: 'report.html', download: 'report.html', text: 'save a report' })) : null);

    const sig = Array.isArray(d.spheres) ? JSON.stringify(d.spheres) : '';
    tree.data = d.spheres;
    tree.sig = sig;
    renderTree(false);
    if (!window.cllmTiming) {
      // Open time, for cllm-bench-report: the first drawing done, and the frame after it.
      const t = (window.cllmTiming = { ready: performance.now() });
      requestAnimationFrame(() => setTimeout(() => { t.painted = performance.now(); }, 0));
    }
    document.body.dataset.ready = '1';
    document.body.dataset.renders = String(+(document.body.dataset.renders || 0) + 1);
  }

  function renderEvents(ev, bucket) {
    const evt = h('table', { cls: 't' }, h('tr', null, ['step', 'event', 'count', 'detail'].map((c, i) => h('th', { cls: i === 0 || i === 2 ? 'num' : null, text: c }))));
    for (const e of ev)
      evt.append(h('tr', { cls: ['restart', 'deadline_kill', 'subtree_restart', 'stop'].includes(e.kind) ? 'hot' : null },
        h('td', { cls: 'num', text: int(e.step) }), h('td', null, h('span', { style: `color:${(KINDS[e.kind] || {}).color || '#333'}`, text: '● ' }), (KINDS[e.kind] || { label: e.kind }).label),
        h('td', { cls: 'num', text: int(e.count) }), h('td', { text: e.detail || '' })));
    fill('event-table', ev.length ? h('div', { cls: 'scroll' }, evt) : h('div', { cls: 'empty', text: 'no restarts, deadline kills, resumes or checkpoints recorded' }));
    const counts = {};
    for (const e of ev) counts[e.kind] = (counts[e.kind] || 0) + e.count;
    fill('events-figures', Object.keys(counts).map((k) => `${(KINDS[k] || { label: k }).label} ${int(counts[k])}`).join(' · ') + (bucket > 1 ? ` (merged per ${int(bucket)} steps)` : ''));
  }

  let resizeTimer = 0;
  window.addEventListener('resize', () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (last) { tree.drawnSig = null; for (const k in drawn) delete drawn[k]; render(last); } }, 150);
  });

  // The compare page (run/assets/compare.js, which follows this script) draws with the same
  // helpers and charts.
  if (MODE === 'compare') {
    window.cllmPage = { h, s, fill, finite, num, int, si, dur, ms, esc, lineChart, resetCharts() { stepCharts = []; } };
    return;
  }

  // ---------------------------------------------------------------------------------------
  // Start: the report carries its data; the live page polls the server about once a second.

  if (MODE !== 'live') {
    const raw = document.getElementById('cllm-data').textContent;
    render(JSON.parse(raw));
    return;
  }

  let version = null, lastChange = Date.now(), failures = 0;
  function setUnreachable(on) {
    const stEl = document.getElementById('status');
    if (on) {
      stEl.className = 'status unreachable';
      stEl.textContent = 'server unreachable';
      stEl.title = 'The trainer or cllm serve has stopped; the page shows the last data it got and keeps trying.';
    } else if (stEl.classList.contains('unreachable')) {
      stEl.classList.remove('unreachable');
      if (last) renderHeader(last);
    }
  }
  function updateAge() {
    const a = document.getElementById('age');
    if (a) a.replaceChildren(h('span', { cls: 'k', text: 'updated' }), h('b', { text: dur((Date.now() - lastChange) / 1000) + ' ago' }));
  }
  async function poll() {
    try {
      const r = await fetch('api/run' + (version ? '?v=' + encodeURIComponent(version) : ''), { cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const d = await r.json();
      failures = 0;
      setUnreachable(false);
      if (!d.unchanged) {
        version = d.version;
        lastChange = Date.now();
        render(d);
      }
    } catch (e) {
      failures++;
      setUnreachable(true);
    }
    updateAge();
    setTimeout(poll, failures ? Math.min(5000, 1000 * (1 + failures)) : 1000);
  }
  poll();
})();
