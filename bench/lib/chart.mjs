// A hand-written SVG line chart: requests/s and p99 latency against concurrency (log scale), for
// crosscred and the baselines, one row of two panels per keep-alive scenario.
const COLORS = { crosscred: '#d62728', 'node:http': '#1f77b4', nginx: '#2ca02c' };
const W = 420,
  H = 260,
  PAD = { l: 60, r: 15, t: 30, b: 40 };

function esc(s) {
  return String(s).replace(/[&<>]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;' })[c]);
}

function panel(x0, y0, title, rows, metric, unit) {
  const levels = [...new Set(rows.map((r) => r.connections))].sort((a, b) => a - b);
  const servers = Object.keys(rows[0]?.results ?? {});
  const max = Math.max(1e-9, ...rows.flatMap((r) => servers.map((s) => r.results[s][metric]))) * 1.1;
  const lx = (c) => (levels.length === 1 ? 0.5 : Math.log(c / levels[0]) / Math.log(levels.at(-1) / levels[0]));
  const px = (c) => x0 + PAD.l + lx(c) * (W - PAD.l - PAD.r);
  const py = (v) => y0 + H - PAD.b - (v / max) * (H - PAD.t - PAD.b);
  const g = [];
  g.push(`<text x="${x0 + W / 2}" y="${y0 + 18}" text-anchor="middle" font-weight="bold">${esc(title)}</text>`);
  g.push(`<line x1="${x0 + PAD.l}" y1="${y0 + H - PAD.b}" x2="${x0 + W - PAD.r}" y2="${y0 + H - PAD.b}" stroke="#333"/>`);
  g.push(`<line x1="${x0 + PAD.l}" y1="${y0 + PAD.t}" x2="${x0 + PAD.l}" y2="${y0 + H - PAD.b}" stroke="#333"/>`);
  for (const c of levels) g.push(`<text x="${px(c)}" y="${y0 + H - PAD.b + 15}" text-anchor="middle">${c}</text>`);
  g.push(`<text x="${x0 + W / 2}" y="${y0 + H - 5}" text-anchor="middle">connections</text>`);
  for (let i = 0; i <= 4; i++) {
    const v = (max / 1.1) * (i / 4);
    g.push(`<line x1="${x0 + PAD.l - 4}" y1="${py(v)}" x2="${x0 + W - PAD.r}" y2="${py(v)}" stroke="#eee"/>`);
    g.push(`<text x="${x0 + PAD.l - 6}" y="${py(v) + 4}" text-anchor="end">${v >= 100 ? Math.round(v) : v.toFixed(1)}</text>`);
  }
  g.push(`<text transform="translate(${x0 + 12},${y0 + H / 2}) rotate(-90)" text-anchor="middle">${esc(unit)}</text>`);
  for (const s of servers) {
    const pts = rows.map((r) => `${px(r.connections).toFixed(1)},${py(r.results[s][metric]).toFixed(1)}`).join(' ');
    g.push(`<polyline fill="none" stroke="${COLORS[s] ?? '#777'}" stroke-width="2" points="${pts}"/>`);
    for (const r of rows)
      g.push(`<circle cx="${px(r.connections).toFixed(1)}" cy="${py(r.results[s][metric]).toFixed(1)}" r="3" fill="${COLORS[s] ?? '#777'}"/>`);
  }
  return g.join('\n');
}

export function renderChart(report) {
  const groups = [
    ['IMDSv2 sequence, keep-alive', report.hotPath.filter((r) => r.scenario === 'imds' && r.keepAlive)],
    ['container endpoint, keep-alive', report.hotPath.filter((r) => r.scenario === 'container' && r.keepAlive)],
  ].filter(([, rows]) => rows.length);
  const servers = Object.keys(report.hotPath[0]?.results ?? {});
  const height = groups.length * H + 50;
  const body = [];
  groups.forEach(([name, rows], i) => {
    body.push(panel(0, 40 + i * H, `${name}: requests/s`, rows, 'rps', 'requests/s'));
    body.push(panel(W, 40 + i * H, `${name}: p99 latency`, rows, 'p99Ms', 'p99 ms'));
  });
  const legend = servers
    .map((s, i) => `<rect x="${20 + i * 140}" y="12" width="14" height="4" fill="${COLORS[s] ?? '#777'}"/><text x="${40 + i * 140}" y="18">${esc(s)}</text>`)
    .join('');
  const m = report.machine;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * W}" height="${height}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
${legend}
<text x="${2 * W - 10}" y="18" text-anchor="end" fill="#555">${esc(`${report.mode}, ${m.nproc} × ${m.cpuModel}, Node ${m.node}, wrk -t1`)}</text>
${body.join('\n')}
</svg>
`;
}
