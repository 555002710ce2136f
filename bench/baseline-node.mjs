// The bare node:http baseline: answers the same paths with the same body bytes crosscred sent,
// with no routing framework, no validation and no logging — the ceiling for any Node server here.
// Usage: node baseline-node.mjs BODIES.json   (prints "LISTENING <port>" once bound on 127.0.0.1)
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

const bodies = JSON.parse(readFileSync(process.argv[2], 'utf8'));
/** path -> [content-type, Buffer, extra headers] */
const routes = new Map();
for (const r of bodies.routes) routes.set(`${r.method} ${r.path}`, [r.contentType, Buffer.from(r.body, 'utf8'), r.headers ?? {}]);

const server = createServer((req, res) => {
  const route = routes.get(`${req.method} ${req.url}`);
  if (!route) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-type': route[0], 'content-length': route[1].length, ...route[2] });
  res.end(route[1]);
});
server.listen(0, '127.0.0.1', () => process.stdout.write(`LISTENING ${server.address().port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
setTimeout(() => process.exit(0), 15 * 60_000).unref(); // never outlive the suite (bounded: 15 min)
