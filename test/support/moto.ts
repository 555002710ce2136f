import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { request } from 'undici';
import { CLIENTS, clientAvailable } from './clients.js';

/** moto_server on a free loopback port: an AWS (STS, IAM) we did not write. Undefined when it is not installed. */
export async function startMoto(): Promise<{ url: string; close(): void } | undefined> {
  if (!(await clientAvailable(CLIENTS.motoServer, ['--help']))) return undefined;
  const port = await freePort();
  const child: ChildProcess = spawn(CLIENTS.motoServer, ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
  const url = `http://127.0.0.1:${port}`;
  await waitForHttp(url, 30_000);
  return { url, close: () => void child.kill('SIGTERM') };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

async function waitForHttp(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await request(url);
      await res.body.dump();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}
