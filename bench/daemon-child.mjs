// crosscred's startDaemon from dist/ (what `crosscred serve` runs) in a child process the suite can
// talk to over IPC: {type:'refresh', role, count, gapMs} forces refreshes through
// cache.refreshNow() (the refresh schedule's own entry point) and answers with their durations.
// Usage (by bench/lib/procs.mjs only): node daemon-child.mjs '<serve flags as JSON>'
import { loadConfig } from '../dist/config/load.js';
import { createLogger } from '../dist/observability/logger.js';
import { startDaemon } from '../dist/serve/daemon.js';

const flags = JSON.parse(process.argv[2]);
const config = loadConfig({ flags, env: {} });
const logger = createLogger({ level: config.logLevel, fd: 2 });
const daemon = await startDaemon(config, { logger });
await daemon.firstFetch;
process.send({
  type: 'ready',
  listeners: daemon.listeners.map((l) => `http://${l.host}:${l.port}`),
  admin: daemon.admin ? `http://${daemon.admin.host}:${daemon.admin.port}` : null,
});

process.on('message', async (m) => {
  if (m.type === 'refresh') {
    const role = daemon.roles.get(m.role);
    const took = [];
    for (let i = 0; i < m.count; i++) {
      const t0 = performance.now();
      await role.cache.refreshNow();
      took.push(performance.now() - t0);
      if (m.gapMs) await new Promise((r) => setTimeout(r, m.gapMs));
    }
    process.send({ id: m.id, took, status: role.cache.status() });
  }
});
process.on('SIGTERM', () => void daemon.close().then(() => process.exit(0)));
process.on('disconnect', () => void daemon.close().then(() => process.exit(0)));
