// Fires N simultaneous first requests at a daemon that is still fetching its first credentials,
// each on its own connection (as N freshly started pods would), and reports when all are answered.
// Started before the daemon; waits for {type:'go', base, authorization, paths} over IPC, answers
// {type:'done', ...}. Bounded: every request has a timeout, the whole run at most COLD_RUN_LIMIT_MS.
import { Agent, request } from 'node:http';

const REQUEST_TIMEOUT_MS = 20_000;
const COLD_RUN_LIMIT_MS = 30_000;
const n = Number(process.argv[2]);

process.on('message', (m) => {
  if (m.type !== 'go') return;
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  const statuses = {};
  let errors = 0;
  let answered = 0;
  const latencies = [];
  const t0 = performance.now();
  const finish = () => {
    latencies.sort((a, b) => a - b);
    const pct = (p) => (latencies.length ? latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] : null);
    process.send(
      { type: 'done', n, statuses, errors, allAnsweredMs: performance.now() - t0, p50Ms: pct(50), p99Ms: pct(99), maxMs: latencies.at(-1) ?? null },
      () => process.exit(0),
    );
  };
  const limit = setTimeout(finish, COLD_RUN_LIMIT_MS);
  const one = (i) => {
    const started = performance.now();
    const req = request(
      `${m.base}${m.paths[i % m.paths.length]}`,
      { agent, headers: { authorization: m.authorization }, timeout: REQUEST_TIMEOUT_MS },
      (res) => {
        res.resume();
        res.on('end', () => {
          statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
          latencies.push(performance.now() - started);
          if (++answered === n) {
            clearTimeout(limit);
            finish();
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => {
      errors++;
      if (++answered === n) {
        clearTimeout(limit);
        finish();
      }
    });
    req.end();
  };
  for (let i = 0; i < n; i++) one(i);
});
process.send({ type: 'ready' });
