import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/chain.js';

/**
 * Keeps the benchmark suite (bench/, issue 5) from rotting: runs `bench/run.mjs --quick` against
 * the built daemon and checks that it completes and writes a well-formed report with every
 * scenario. No timing is asserted: on a shared 2-core machine numbers move from run to run.
 */
const wrkMissing = spawnSync('wrk', ['-v']).error !== undefined;
const strict = process.env['CROSSCRED_E2E_STRICT'] === '1';
const skipReason = wrkMissing && !strict ? 'wrk is not installed (apt-get install -y wrk); the benchmark quick run is skipped' : undefined;

/** The quick mode takes under a minute; the slack covers a loaded CI machine. */
const QUICK_TIMEOUT_MS = 180_000;

interface WrkResult {
  rps: number;
  p99Ms: number;
  errors: number;
  requests: number;
}

describe('npm run bench -- --quick', { skip: skipReason !== undefined, meta: { skipReason } }, () => {
  it('completes and writes a report with every scenario', { timeout: QUICK_TIMEOUT_MS + 10_000 }, async () => {
    expect(wrkMissing, 'wrk is required with CROSSCRED_E2E_STRICT=1').toBe(false);
    const out = await mkdtemp(join(tmpdir(), 'crosscred-bench-quick-'));
    try {
      const run = spawnSync(process.execPath, [join(REPO_ROOT, 'bench/run.mjs'), '--quick', '--out', out], { encoding: 'utf8', timeout: QUICK_TIMEOUT_MS });
      expect(run.status, `bench --quick failed:\n${run.stderr}\n${run.stdout}`).toBe(0);

      const report = JSON.parse(await readFile(join(out, 'latest.json'), 'utf8')) as {
        schema: string;
        mode: string;
        machine: { nproc: number; node: string };
        hotPath: Array<{ scenario: string; keepAlive: boolean; connections: number; results: Record<string, WrkResult>; ratio: { rpsVsNode: number } }>;
        memory: { afterHotPath: { rssMb: number } };
        coldPath: Array<{ n: number; stsCalls: Record<string, number>; statuses: Record<string, number>; clientErrors: number }>;
        refreshUnderLoad: { summary: Record<string, { errorsDuring: number; refreshes: number }> };
        slowSts: { summary: Record<string, { errorsDuring: number; refreshes: number }> };
        roleScale: Array<{ roles: number; stsCalls: number; imds: WrkResult; container: WrkResult }>;
      };
      expect(report.schema).toBe('crosscred-bench/1');
      expect(report.mode).toBe('quick');
      expect(report.machine.nproc).toBeGreaterThan(0);

      // Hot path: both protocols, both connection modes, crosscred and the node:http baseline in each row.
      for (const scenario of ['imds', 'container']) {
        for (const keepAlive of [true, false]) {
          expect(
            report.hotPath.some((r) => r.scenario === scenario && r.keepAlive === keepAlive),
            `${scenario} keepAlive=${keepAlive}`,
          ).toBe(true);
        }
      }
      for (const row of report.hotPath) {
        for (const server of ['crosscred', 'node:http']) {
          const r = row.results[server]!;
          expect(r.requests, `${server} ${row.scenario} c=${row.connections}`).toBeGreaterThan(0);
          // Keep-alive on loopback has no way to fail; a new connection per request may meet a full backlog.
          if (row.keepAlive) expect(r.errors, `${server} ${row.scenario} keep-alive c=${row.connections}`).toBe(0);
        }
        expect(row.ratio.rpsVsNode).toBeGreaterThan(0);
      }
      expect(report.memory.afterHotPath.rssMb).toBeGreaterThan(0);

      // Cold path: one STS call per role, whatever the number of simultaneous first requests.
      expect(report.coldPath.map((c) => c.n)).toEqual([1, 100, 1000]);
      for (const c of report.coldPath) expect(c.stsCalls, `n=${c.n}`).toEqual({ 'cold-a': 1, 'cold-b': 1, total: 2 });

      // Refresh under load and slow STS: refreshes happened and no request failed.
      for (const s of [report.refreshUnderLoad, report.slowSts]) {
        expect(Object.keys(s.summary).length).toBeGreaterThan(0);
        for (const v of Object.values(s.summary)) {
          expect(v.refreshes).toBeGreaterThan(0);
          expect(v.errorsDuring).toBe(0);
        }
      }

      // Scale of roles: one STS call per configured role, and the hot path answered without errors.
      expect(report.roleScale.map((r) => r.roles)).toEqual([1, 100]);
      for (const r of report.roleScale) {
        expect(r.stsCalls).toBe(r.roles);
        expect(r.imds.errors).toBe(0);
        expect(r.container.errors).toBe(0);
      }

      for (const file of ['latest.md', 'latest.svg']) expect((await readFile(join(out, file), 'utf8')).length).toBeGreaterThan(100);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });
});
