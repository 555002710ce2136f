#!/usr/bin/env node
// Time to ready and idle resident memory of `serve` on the demo chain: the single executable (A)
// against `node dist/cli/main.js` (B), started in turn (A B A B …) so that both see the same
// machine, with the same V8 flag (NODE_OPTIONS for A, as the unit sets it; the flag on B's command
// line, as the shebang and `npm start` pass it). Needs `npm run build` (the demo's issuer and STS
// emulator come from dist/). Figures for docs/packaging.md.
//
//   node packaging/measure.mjs --binary release/crosscred-<version>-linux-x86_64 [--rounds 10]
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const REPO = resolve(new URL('..', import.meta.url).pathname);
const { values } = parseArgs({
  options: { binary: { type: 'string' }, rounds: { type: 'string', default: '10' }, 'idle-ms': { type: 'string', default: '3000' } },
});
if (!values.binary) throw new Error('--binary PATH is required');
const { DemoOidcIssuer } = await import(join(REPO, 'dist/demo/oidc-issuer.js'));
const { StsEmulator } = await import(join(REPO, 'dist/demo/sts-emulator.js'));

const ROLE = 'arn:aws:iam::111122223333:role/measure';
const SUB = 'system:serviceaccount:measure:app';
const issuer = await DemoOidcIssuer.start();
const sts = await StsEmulator.start({ trust: [{ roleArn: ROLE, issuer: issuer.url, audience: 'sts.amazonaws.com', subject: SUB }] });
const dir = await mkdtemp(join(tmpdir(), 'crosscred-measure-'));
const tokenFile = join(dir, 'token');
await writeFile(tokenFile, await issuer.mint({ sub: SUB, aud: 'sts.amazonaws.com', ttlSeconds: 3600 }));

const FLAG = '--max-semi-space-size=2';
const variants = {
  binary: { cmd: resolve(values.binary), pre: [], env: { NODE_OPTIONS: FLAG } },
  node: { cmd: process.execPath, pre: [FLAG, join(REPO, 'dist/cli/main.js')], env: {} },
};

async function once({ cmd, pre, env }, port) {
  const args = [
    ...pre,
    'serve',
    '--role-arn',
    ROLE,
    '--token-file',
    tokenFile,
    '--sts-endpoint',
    sts.url,
    '--listen',
    `127.0.0.1:${port}`,
    '--admin-listen',
    `127.0.0.1:${port + 1}`,
  ];
  const started = performance.now();
  const child = spawn(cmd, args, { env: { PATH: process.env.PATH, ...env }, stdio: 'ignore' });
  try {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`serve exited ${child.exitCode}`);
      const ok = await fetch(`http://127.0.0.1:${port + 1}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ok) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const readyMs = performance.now() - started;
    await new Promise((r) => setTimeout(r, Number(values['idle-ms'])));
    const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
    const rssKiB = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]);
    return { readyMs, rssMiB: rssKiB / 1024 };
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
  }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = { binary: [], node: [] };
try {
  for (let i = 0; i < Number(values.rounds); i++) {
    for (const name of ['binary', 'node']) results[name].push(await once(variants[name], 18170 + i * 4 + (name === 'node' ? 2 : 0)));
  }
} finally {
  await Promise.all([sts.close(), issuer.close()]);
  await rm(dir, { recursive: true, force: true });
}
for (const name of ['binary', 'node']) {
  const r = results[name];
  const ready = r.map((x) => x.readyMs);
  const rss = r.map((x) => x.rssMiB);
  console.log(
    `${name}: ready median ${median(ready).toFixed(0)} ms (min ${Math.min(...ready).toFixed(0)}, max ${Math.max(...ready).toFixed(0)}); idle RSS median ${median(rss).toFixed(1)} MiB (min ${Math.min(...rss).toFixed(1)}, max ${Math.max(...rss).toFixed(1)})`,
  );
}
