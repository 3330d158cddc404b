// The compare page of `cllm report RUN_A RUN_B ...`: runs overlaid against the step and against
// training time, the settings that differ, a summary row per run, groups with min/max bands, and
// where the runs' weights part. It draws with page.js's helpers (window.cllmPage).
//
// The data (built by run/compare.cpp, compare_view):
//   meta     {mode: 'compare', generated_at, runs, max_points, group_by}
//   runs     [{name, dir, status {state, text}, steps, final_loss, val_bpb, tokens_per_s_median,
//            restarts, nodes_lost, wall_s, group (index into groups, with group_by),
//            time_split {compute, fold, reduce, wait} (shares over all steps, or null),
//            series {loss, val_bpb, tokens_per_s, step_ms, cpu_s, rss_mb: {x: steps, t: training
//            s, y}},
//            diff (against the first run, when both have fingerprints): {identical, compared,
//            through, first_differ, tensors, other_models, text}}]
//   differ   [{key, values: [one per run]}] (settings that are not the same in every run)
//   groups   [{value, runs: [indices], bands {metric: {x, lo, hi, mean}}}] (with group_by)
//   notices  [{level, text}]
(function () {
  'use strict';
  const P = window.cllmPage;
  if (!P) return;
  const { h, fill, finite, num, int, si, dur, ms, lineChart } = P;

  const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];
  const colorAt = (i) => (i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.508) % 360},62%,45%)`);

  function seconds(v) {
    if (!finite(v)) return '–';
    return v >= 60 ? dur(v) : +v.toPrecision(3) + ' s';
  }

  const ALL_METRICS = [
    { key: 'loss', title: 'Training loss', yLabel: 'loss', fmt: num },
    { key: 'val_bpb', title: 'Validation bits per byte', yLabel: 'bits / byte', fmt: num, dots: true },
    { key: 'tokens_per_s', title: 'Tokens / s', yLabel: 'tokens / s', fmt: int, yFmt: si, yMin0: true },
    { key: 'step_ms', title: 'Step time', yLabel: 'step ms', fmt: ms, yMin0: true },
    { key: 'cpu_s', title: 'Process CPU time (against training time, the slope is the cores in use)', yLabel: 'CPU s', fmt: seconds, yMin0: true },
    { key: 'rss_mb', title: 'Resident memory', yLabel: 'MB', fmt: (v) => num(v) + ' MB', yMin0: true },
    // Cluster runs only (node_usage): drawn when some run has nodes.
    { key: 'nodes_cpu_s', title: 'Nodes\' CPU time, summed over the nodes', yLabel: 'CPU s', fmt: seconds, yMin0: true, nodes: true },
    { key: 'nodes_rss_mb', title: 'Resident memory of the largest node', yLabel: 'MB', fmt: (v) => num(v) + ' MB', yMin0: true, nodes: true },
  ];

  function renderRuns(d) {
    const grouped = Array.isArray(d.groups);
    const cols = ['', 'run', grouped ? String(d.meta.group_by) : null, 'status', 'steps', 'final loss', 'val bpb', 'tokens/s (median)', 'restarts', 'nodes lost', 'wall time', d.runs.length > 1 ? 'weights vs ' + d.runs[0].name : null].filter((c) => c != null);
    const t = h('table', { cls: 't' }, h('tr', null, cols.map((c) => h('th', { text: c }))));
    d.runs.forEach((r, i) => {
      const diff = r.diff ? (r.diff.identical ? `identical through step ${int(r.diff.through)}` : `first difference at step ${int(r.diff.first_differ)}`) : i === 0 ? '(reference)' : '–';
      t.append(h('tr', { 'data-run': i },
        h('td', null, h('i', { cls: 'swatch', style: `background:${r.color}` })),
        h('td', { cls: 'name', title: r.dir, text: r.name }),
        grouped ? h('td', { cls: 'group', text: d.groups[r.group].value }) : null,
        h('td', { cls: 'run-state', text: (r.status && r.status.state) || '' }),
        h('td', { cls: 'num', text: int(r.steps) }),
        h('td', { cls: 'num final-loss', text: num(r.final_loss) }),
        h('td', { cls: 'num', text: num(r.val_bpb) }),
        h('td', { cls: 'num', text: int(r.tokens_per_s_median) }),
        h('td', { cls: 'num', text: int(r.restarts) }),
        h('td', { cls: 'num', text: int(r.nodes_lost) }),
        h('td', { cls: 'num', text: seconds(r.wall_s) }),
        d.runs.length > 1 ? h('td', { cls: 'diff' + (r.diff && !r.diff.identical ? ' parted' : ''), text: diff }) : null));
    });
    fill('runs-table', h('div', { cls: 'scroll' }, t));
    fill('runs-figures', `${int(d.runs.length)} runs · report of ${d.meta.generated_at}`);
    const two = d.runs.length === 2 && d.runs[1].diff;
    fill('diff-note', two ? `Weights (from the fingerprints in metrics.jsonl): ${two.text}` : d.runs.length > 1 ? 'The last column compares each run\'s weights fingerprints with the first run\'s, step by step (cllm diff).' : '');
  }

  function renderDiffer(d) {
    const t = h('table', { cls: 't' }, h('tr', null, h('th', { text: 'setting' }), d.runs.map((r) => h('th', { text: r.name }))));
    for (const row of d.differ)
      t.append(h('tr', { 'data-key': row.key }, h('td', { cls: 'key', text: row.key }),
        row.values.map((v) => h('td', { cls: 'val', text: v == null ? '–' : typeof v === 'string' ? (v === '' ? '""' : v) : JSON.stringify(v) }))));
    fill('differ-table', d.differ.length ? h('div', { cls: 'scroll' }, t) : h('div', { cls: 'empty', text: 'every recorded setting is the same in every run' }));
    fill('differ-figures', `${int(d.differ.length)} of the recorded settings`);
  }

  function renderGroups(d) {
    const sec = document.getElementById('sec-groups');
    if (!Array.isArray(d.groups)) { sec.hidden = true; return; }
    sec.hidden = false;
    fill('groups-legend', d.groups.map((g, i) => h('span', { 'data-group': i }, h('i', { cls: 'sq', style: `background:${colorAt(i)}` }), `${d.meta.group_by} = ${g.value} (${g.runs.length} runs)`)));
    fill('groups-figures', `by ${d.meta.group_by}: a band from the smallest to the largest value of the group's runs at each step, and their mean`);
  }

  const SPLIT = [
    { key: 'compute', color: '#3b7dd8' },
    { key: 'fold', color: '#23a4a0' },
    { key: 'reduce', color: '#f0a030' },
    { key: 'wait', color: '#c9cfd9' },
  ];
  function renderSplit(d) {
    const sec = document.getElementById('sec-split');
    const any = d.runs.some((r) => r.time_split);
    sec.hidden = !any;
    if (!any) return;
    const t = h('table', { cls: 't split' }, h('tr', null, h('th', { text: 'run' }), h('th', { text: 'compute · fold · reduce · wait' }), SPLIT.map((p) => h('th', { cls: 'num', text: p.key }))));
    d.runs.forEach((r, i) => {
      const sp = r.time_split;
      t.append(h('tr', { 'data-run': i }, h('td', { cls: 'name', text: r.name }),
        h('td', { cls: 'bar' }, sp ? h('div', { cls: 'split-bar' }, SPLIT.map((p) => h('span', { cls: 'seg seg-' + p.key, 'data-share': sp[p.key], title: `${p.key} ${(100 * sp[p.key]).toFixed(1)}%`, style: `width:${(100 * sp[p.key]).toFixed(2)}%;background:${p.color}` }))) : '–'),
        SPLIT.map((p) => h('td', { cls: 'num', text: sp ? (100 * sp[p.key]).toFixed(1) + '%' : '–' }))));
    });
    fill('split-table', h('div', { cls: 'scroll' }, t));
    fill('split-figures', 'shares of the computing spheres\' time over all steps; wait = (spheres computing, at most the scheduler threads) × step time − compute − fold − reduce');
  }

  // With groups, the runs' median tokens/s against a numeric setting that differs (the sphere
  // count when it does): one line per group, e.g. actors vs mutex vs barrier over sphere counts.
  function renderBySetting(d) {
    const sec = document.getElementById('sec-by-setting');
    const grouped = Array.isArray(d.groups);
    const numeric = d.differ.filter((row) => row.key !== d.meta.group_by && row.values.every((v) => finite(v)) && new Set(row.values).size > 1);
    const row = numeric.find((r) => r.key === 'spheres') || numeric[0];
    sec.hidden = !grouped || !row;
    if (sec.hidden) return;
    document.getElementById('by-setting-key').textContent = row.key;
    const series = d.groups.map((g, gi) => {
      const pts = g.runs.filter((i) => finite(d.runs[i].tokens_per_s_median)).map((i) => [row.values[i], d.runs[i].tokens_per_s_median]).sort((a, b) => a[0] - b[0]);
      return { x: pts.map((p) => p[0]), y: pts.map((p) => p[1]), color: colorAt(gi), width: 2, dots: true, cls: `s-by-setting group-${gi}`, label: `${d.meta.group_by} = ${g.value}`, fmt: int };
    });
    const xs = row.values.filter(finite);
    const lo = Math.min(...xs), hi = Math.max(...xs);
    lineChart('c-by-setting', { height: 220, axis: 'setting', xDomain: [lo - (hi - lo) * 0.04, hi + (hi - lo) * 0.04], xFmt: num, series, yLabel: 'tokens / s', yFmt: si, yMin0: true });
    fill('by-setting-figures', `median tokens/s of each run, one line per ${d.meta.group_by}`);
  }

  function renderCharts(d) {
    P.resetCharts();
    const METRICS = ALL_METRICS.filter((m) => !m.nodes || d.runs.some((r) => r.series[m.key].y.some((v) => v != null && isFinite(v))));
    const grouped = Array.isArray(d.groups);
    let maxStep = 1, maxT = 0;
    for (const r of d.runs) for (const m of METRICS) {
      const q = r.series[m.key];
      if (q.x.length) maxStep = Math.max(maxStep, q.x[q.x.length - 1]), maxT = Math.max(maxT, q.t[q.t.length - 1]);
    }
    const two = d.runs.length === 2 && d.runs[1].diff && !d.runs[1].diff.identical ? d.runs[1].diff : null;
    const rows = [];
    for (const m of METRICS) {
      const idStep = `c-${m.key}-step`, idTime = `c-${m.key}-time`;
      rows.push(h('h3', { text: m.title }), h('div', { cls: 'row pair' }, h('div', { id: idStep, cls: 'chart' }), h('div', { id: idTime, cls: 'chart' })));
    }
    fill('charts', rows);
    const many = d.runs.length > 12;
    for (const m of METRICS) {
      const lines = (axis) => d.runs.map((r, i) => {
        const q = r.series[m.key];
        return { x: axis === 'time' ? q.t : q.x, y: q.y, n: q.y.length, color: r.color, width: many ? 1 : 1.6,
          opacity: grouped && many ? 0.55 : null, cls: `s-${m.key} run-${i}`, label: r.name, fmt: m.fmt, dots: m.dots && !many };
      });
      const bands = grouped ? d.groups.map((g, gi) => ({ ...g.bands[m.key], color: colorAt(gi), cls: `band band-${gi}` })) : [];
      const means = grouped ? d.groups.map((g, gi) => ({ x: g.bands[m.key].x, y: g.bands[m.key].mean, color: colorAt(gi), width: 2.4, cls: `s-mean group-${gi}`, label: `${d.meta.group_by} = ${g.value} (mean)`, fmt: m.fmt })) : [];
      const common = { height: 200, yLabel: m.yLabel, yFmt: m.yFmt, yMin0: m.yMin0, legend: false, tipRows: 14, empty: 'no values in these runs' };
      lineChart(`c-${m.key}-step`, { ...common, xDomain: [0, maxStep], series: lines('step').concat(means), bands,
        marks: two ? [{ x: two.first_differ, label: `weights part: step ${int(two.first_differ)}`, cls: 'differ-mark' }] : [] });
      lineChart(`c-${m.key}-time`, { ...common, axis: 'time', xDomain: [0, Math.max(maxT, 1e-3)], xFmt: seconds, series: lines('time') });
    }
    fill('charts-figures', 'left: against the step · right: against training time (the steps\' times summed)');
    fill('charts-note', `Each run is drawn from at most ${int(d.meta.max_points)} points per series (the smallest and largest value of each bucket of steps).` + (grouped ? ' Bands are drawn against the step only.' : ''));
  }

  function render(d) {
    const grouped = Array.isArray(d.groups);
    d.runs.forEach((r, i) => { r.color = grouped ? colorAt(r.group) : colorAt(i); });
    document.getElementById('run-name').textContent = `compare ${d.runs.length} runs`;
    const stEl = document.getElementById('status');
    const states = {};
    for (const r of d.runs) { const st = (r.status && r.status.state) || '?'; states[st] = (states[st] || 0) + 1; }
    stEl.className = 'status ' + (Object.keys(states).length === 1 ? Object.keys(states)[0] : '');
    stEl.textContent = Object.keys(states).map((k) => `${states[k]} ${k}`).join(' · ');
    fill('progress', h('span', null, h('span', { cls: 'k', text: 'runs' }), h('b', { text: int(d.runs.length) })),
      grouped ? h('span', null, h('span', { cls: 'k', text: 'grouped by' }), h('b', { text: d.meta.group_by })) : null,
      h('span', null, h('span', { cls: 'k', text: 'report of' }), h('b', { text: d.meta.generated_at })));
    fill('notices', (d.notices || []).map((n) => h('div', { cls: 'notice ' + n.level, text: n.text })));
    renderRuns(d);
    renderDiffer(d);
    renderGroups(d);
    renderCharts(d);
    renderBySetting(d);
    renderSplit(d);
    const live = document.body.dataset.live === 'live';
    fill('footer', `Comparison of ${d.runs.length} runs · made by cllm ${live ? 'serve' : 'report'} · ${d.meta.generated_at}`,
      live ? h('span', null, ' · ', h('a', { href: 'report.html', download: 'compare.html', text: 'save a report' })) : null);
    if (!window.cllmTiming) {
      const t = (window.cllmTiming = { ready: performance.now() });
      requestAnimationFrame(() => setTimeout(() => { t.painted = performance.now(); }, 0));
    }
    document.body.dataset.ready = '1';
    document.body.dataset.renders = String(+(document.body.dataset.renders || 0) + 1);
  }

  // A report carries its data; the live page (cllm serve of several runs) polls the server and
  // redraws when a run changed.
  if (document.body.dataset.live !== 'live') {
    render(JSON.parse(document.getElementById('cllm-data').textContent));
    return;
  }
  let version = null, failures = 0;
  async function poll() {
    try {
      const r = await fetch('api/run' + (version ? '?v=' + encodeURIComponent(version) : ''), { cache: 'no-store' });
      if (!r.ok) throw new Error('HTTP ' + r.status);
      const d = await r.json();
      failures = 0;
      if (!d.unchanged) {
        version = d.version;
        render(d);
      }
    } catch (e) {
      failures++;
      const st = document.getElementById('status');
      st.className = 'status unreachable';
      st.textContent = 'server unreachable';
    }
    setTimeout(poll, failures ? Math.min(5000, 1000 * (1 + failures)) : 2000);
  }
  poll();
})();
