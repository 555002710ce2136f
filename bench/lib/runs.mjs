// What the --clouds and --chains benchmarks share: reading a serve's readiness, asking a metadata
// token, one wrk GET, and the median (min–max) of interleaved repeats.
import { runWrk } from './wrk.mjs';

export const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
export const spread = (xs) => ({ median: median(xs), min: Math.min(...xs), max: Math.max(...xs) });
/** A spread as the results tables print it: `median (min–max)`, or one number when they agree. */
export const range = (s, d = 0) => (s.min === s.max ? s.median.toFixed(d) : `${s.median.toFixed(d)} (${s.min.toFixed(d)}–${s.max.toFixed(d)})`);

/** The spread of req/s, p50 and p99, and the summed errors and requests, of each kind's wrk runs. */
export function summariseRuns(runs) {
  const s = {};
  for (const [kind, rs] of Object.entries(runs))
    s[kind] = {
      rps: spread(rs.map((r) => r.rps)),
      p50Ms: spread(rs.map((r) => r.p50Ms)),
      p99Ms: spread(rs.map((r) => r.p99Ms)),
      errors: rs.reduce((a, r) => a + r.errors, 0),
      requests: rs.reduce((a, r) => a + r.requests, 0),
    };
  return s;
}

/** A metadata session token (IMDSv2's, or Alibaba's with its own TTL header), good for 6 hours. */
export async function putMetadataToken(base, ttlHeader = 'x-aws-ec2-metadata-token-ttl-seconds') {
  const r = await fetch(`${base}/latest/api/token`, { method: 'PUT', headers: { [ttlHeader]: '21600' } });
  const body = await r.text();
  if (r.status !== 200) throw new Error(`PUT /latest/api/token (${ttlHeader}) answered ${r.status}`);
  return body;
}

/** Polls `/readyz` until 200; 1,000 chained roles make 2,000 STS calls before, so the slack covers a loaded machine. */
export async function waitReady(admin, timeoutMs = 120_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(`${admin}/readyz`);
      await r.arrayBuffer();
      if (r.status === 200) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`${admin}/readyz not 200 after ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 10));
  }
}

/**
 * One keep-alive wrk run of a single GET with fixed headers (`-H`), one thread, summarised by
 * bench/lua/report.lua. bench/lib/wrk.mjs's scenarios carry only AWS's headers.
 */
export function wrkGet({ base, path, headers, connections, durationS }) {
  return runWrk({ base, scenario: 'get', containerPath: path, headers, connections, durationS, keepAlive: true });
}
