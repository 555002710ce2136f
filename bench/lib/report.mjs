// The markdown table of a bench report (bench/results/latest.md, and docs/benchmarks.md).
const f = (x, d = 2) => (x === null || x === undefined || Number.isNaN(x) ? '–' : Number(x).toFixed(d));
const pct = (x) => (x === null || x === undefined ? '–' : `${Math.round(x * 100)}%`);

export function renderMarkdown(r) {
  const m = r.machine;
  const out = [];
  out.push(`# crosscred benchmark (${r.mode})`, '');
  out.push(
    `${r.startedAt}, ${r.durationSeconds} s. Machine: ${m.nproc} × ${m.cpuModel}, Node ${m.node}, ${m.wrk}, ${m.nginx ?? 'no nginx'}, Linux ${m.kernel}.`,
  );
  out.push(
    'Load: `wrk -t1` (one thread) on the same machine as the server; all on 127.0.0.1. Ratios are crosscred ÷ baseline measured in the same run, alternating.',
    '',
  );
  for (const n of r.notes) out.push(`> ${n}`, '');

  out.push('## Hot path', '');
  out.push(
    "`imds` = the SDK's IMDSv2 sequence (PUT token, GET role list, GET credentials; latency per request); `container` = GET /v1/credentials with Authorization. `close` = `Connection: close` on every request (a new TCP connection each; wrk's latency excludes the TCP handshake).",
    '',
  );
  out.push(
    '| scenario | conn | crosscred req/s | p50 ms | p99 ms | p99.9 ms | errors | node:http req/s | p99 ms | nginx req/s | p99 ms | ÷ node req/s | ÷ nginx req/s |',
  );
  out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const row of r.hotPath) {
    const x = row.results.crosscred,
      n = row.results['node:http'],
      g = row.results.nginx;
    out.push(
      `| ${row.scenario} ${row.keepAlive ? 'keep-alive' : 'close'} | ${row.connections} | ${x.rps} | ${f(x.p50Ms)} | ${f(x.p99Ms)} | ${f(x.p999Ms)} | ${x.errors} | ${n.rps} | ${f(n.p99Ms)} | ${g ? g.rps : '–'} | ${g ? f(g.p99Ms) : '–'} | ${pct(row.ratio.rpsVsNode)} | ${pct(row.ratio.rpsVsNginx)} |`,
    );
  }
  out.push('');
  const mem = r.memory;
  out.push(
    `Memory with one role: RSS ${mem.afterStartup?.rssMb} MB after start-up, ${mem.afterHotPath?.rssMb} MB after the hot path (peak ${mem.afterHotPath?.peakRssMb} MB). Start-up: listening after ${mem.startupMs?.listening} ms, ready (/readyz 200) after ${mem.startupMs?.ready} ms from process start.`,
    '',
  );

  out.push('## Cold path', '');
  out.push(
    `N simultaneous first requests, one connection each, split over 2 roles (\`/v1/credentials/cold-a\`, \`cold-b\`), fired as soon as the listener opens while the first STS call is still in flight (the fake STS takes ${r.coldPath[0]?.stsDelayMs ?? '–'} ms).`,
    '',
  );
  out.push('| N | STS calls (cold-a / cold-b) | all answered ms | p50 ms | p99 ms | statuses | client errors | start → listening ms | start → ready ms |');
  out.push('|---:|---|---:|---:|---:|---|---:|---:|---:|');
  for (const c of r.coldPath)
    out.push(
      `| ${c.n} | ${c.stsCalls['cold-a']} / ${c.stsCalls['cold-b']} | ${c.allAnsweredMs} | ${f(c.p50Ms, 1)} | ${f(c.p99Ms, 1)} | ${Object.entries(c.statuses)
        .map(([k, v]) => `${k}×${v}`)
        .join(' ')} | ${c.clientErrors} | ${c.processStartToListeningMs} | ${c.processStartToReadyMs} |`,
    );
  out.push('');

  for (const [title, s] of [
    ['Refresh under load', r.refreshUnderLoad],
    ['Slow STS (answers in 2 s)', r.slowSts],
  ]) {
    if (!s) continue;
    out.push(
      `## ${title}`,
      '',
      `${s.note} 64 keep-alive connections; medians of ${s.pairs.length / Object.keys(s.summary).length} alternating quiet/during pairs.`,
      '',
    );
    out.push('| scenario | p99 quiet ms | p99 during ms | change | req/s quiet | req/s during | errors during | STS calls during | median refresh ms |');
    out.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const [k, v] of Object.entries(s.summary))
      out.push(
        `| ${k} | ${f(v.p99QuietMs)} | ${f(v.p99DuringMs)} | ${v.p99Change >= 0 ? '+' : ''}${pct(v.p99Change)} | ${v.rpsQuiet} | ${v.rpsDuring} | ${v.errorsDuring} | ${v.refreshes} | ${f(v.medianRefreshMs, 0)} |`,
      );
    out.push('');
  }

  out.push('## Scale of roles', '');
  out.push('IMDS sequence on the listener of `role-0`; container endpoint asking for the last configured role. 64 keep-alive connections.', '');
  out.push('| roles | STS calls | start → ready ms | RSS after ready MB | RSS after load MB | imds req/s | imds p99 ms | container req/s | container p99 ms |');
  out.push('|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const s of r.roleScale)
    out.push(
      `| ${s.roles} | ${s.stsCalls} | ${s.processStartToReadyMs} | ${s.memoryAfterReady.rssMb} | ${s.memoryAfterLoad.rssMb} | ${s.imds.rps} | ${f(s.imds.p99Ms)} | ${s.container.rps} | ${f(s.container.p99Ms)} |`,
    );
  out.push('');
  return out.join('\n');
}
