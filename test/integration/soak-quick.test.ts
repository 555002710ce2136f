import { spawn, spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The soak (issue 6, item 4) in its quick form: test/soak/soak.mjs runs the built daemon under
 * ~20 s of mixed and hostile load plus an overload phase, and judges it (memory, fds, event-loop
 * delay, timeouts, answers, credentials). Its verdicts are the assertions; this test also checks
 * that it really measured something, so a driver that samples or sends nothing cannot pass.
 *
 * Requests are accounted for exactly, with no allowance: each load generator stops sending, waits
 * for the answers to what it has in flight, and only then stops, so at the end sent = answered on
 * the client side, and the daemon's count of answers by status matches what the clients read
 * (test/soak/soak.mjs, "every request of the load accounted for"; test/soak/lua/common.lua says
 * why counting wrk's request() calls against its answers used to be off by up to connections + 1).
 * `npm run soak` is the 10-minute form.
 */
const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const wrkMissing = spawnSync('wrk', ['-v']).error !== undefined;
const strict = process.env['CROSSCRED_E2E_STRICT'] === '1';
const skipReason = wrkMissing && !strict ? 'wrk is not installed (apt-get install -y wrk); the quick soak is skipped' : undefined;

/** The quick form takes about 30 s here (20 s of load, 3 s of drain); the rest is slack for a machine busy with other tests. */
const SOAK_TIMEOUT_MS = 100_000;

interface Check {
  name: string;
  ok: boolean;
  detail: Record<string, unknown>;
}
interface Summary {
  schema: string;
  ok: boolean;
  failed: string[];
  mode: string;
  plan: { overload: { extra: number; rounds: number }; abuse: { slowLoris: number } };
  counts: {
    samples: number;
    loadSamples: number;
    requests: Record<'imdsSequence' | 'containerChurn' | 'tokenFlood' | 'badRequests', number>;
    rawExchanges: number;
    rawAbandons: number;
    slowLorisOpened: number;
    overloadAnswers: number;
    daemonAnswers: number;
  };
  checks: Check[];
  samples: Array<{ phase: string; rssMb: number; fds: number; eventLoop?: { p99Ms: number | null } }>;
}

function runSoak(): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise) => {
    const child = spawn(process.execPath, [join(REPO_ROOT, 'test/soak/soak.mjs'), '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), SOAK_TIMEOUT_MS);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolvePromise({ code, stdout, stderr });
    });
  });
}

describe('soak, quick form', { skip: skipReason !== undefined, meta: { skipReason } }, () => {
  it('passes every check, having sampled and loaded the daemon for real', { timeout: 2 * SOAK_TIMEOUT_MS + 10_000 }, async () => {
    expect(wrkMissing, 'wrk is required with CROSSCRED_E2E_STRICT=1').toBe(false);
    const parse = (run: { code: number | null; stdout: string; stderr: string }): Summary => {
      try {
        return JSON.parse(run.stdout) as Summary;
      } catch {
        throw new Error(`the soak printed no JSON summary (exit ${run.code}):\n${run.stderr.slice(-4000)}\n${run.stdout.slice(-2000)}`);
      }
    };
    let run = await runSoak();
    let summary = parse(run);
    // One load generator (a wrk run) sometimes ends with no report at all on a loaded CI machine
    // (seen once in ten runs, on the Connection: close churn): that measures wrk, not the daemon.
    // Such a run is repeated once, and said so; any other failure, or the same one twice, fails.
    const generatorsWithoutReport = (s: Summary) => {
      const timeouts = s.checks.find((c) => c.name === 'zero timeouts')?.detail as { wrk?: Record<string, { timeouts: number | null }> } | undefined;
      return Object.entries(timeouts?.wrk ?? {})
        .filter(([, w]) => w.timeouts === null)
        .map(([name]) => name);
    };
    const missing = generatorsWithoutReport(summary);
    if (!summary.ok && missing.length > 0) {
      console.warn(
        `soak: load generator(s) ${missing.join(', ')} ended without a report; running the quick soak once more. stderr tail:\n${run.stderr.slice(-1500)}`,
      );
      run = await runSoak();
      summary = parse(run);
    }
    expect(summary.schema).toBe('crosscred-soak/1');
    expect(summary.mode).toBe('quick');

    // The verdicts: each check by name, with its evidence when it failed.
    for (const c of summary.checks) expect(c.ok, `${c.name}: ${JSON.stringify(c.detail, null, 2)}`).toBe(true);
    expect(summary.ok).toBe(true);
    expect(run.code, run.stderr.slice(-4000)).toBe(0);
    expect(summary.checks.map((c) => c.name)).toEqual(
      expect.arrayContaining([
        'memory flat and bounded',
        'event-loop delay bounded',
        'fds back to baseline after load',
        'fds back to baseline after overload',
        'zero timeouts',
        'every request of the load accounted for, exactly, by the clients and the daemon',
        'overload answered with 503 + Retry-After, quickly',
        'credentials served correctly at the end',
      ]),
    );

    // It measured something: samples every second of a ~20 s load, with real numbers in them.
    const { counts } = summary;
    expect(counts.loadSamples).toBeGreaterThanOrEqual(10);
    const load = summary.samples.filter((s) => s.phase === 'load');
    expect(load.length).toBe(counts.loadSamples);
    for (const s of load) {
      expect(s.rssMb).toBeGreaterThan(10);
      expect(s.fds).toBeGreaterThan(5);
      expect(s.eventLoop?.p99Ms ?? 0).toBeGreaterThan(0);
    }
    // …and loaded the daemon: floors far below what this machine does (tens of thousands of
    // requests per generator), so only a generator that barely ran fails them.
    expect(counts.requests.imdsSequence).toBeGreaterThan(3_000);
    expect(counts.requests.tokenFlood).toBeGreaterThan(1_000);
    expect(counts.requests.badRequests).toBeGreaterThan(1_000);
    expect(counts.requests.containerChurn).toBeGreaterThan(200);
    expect(counts.rawExchanges).toBeGreaterThan(100);
    expect(counts.rawAbandons).toBeGreaterThan(50);
    expect(counts.slowLorisOpened).toBeGreaterThanOrEqual(summary.plan.abuse.slowLoris);
    expect(counts.overloadAnswers).toBe(summary.plan.overload.extra * summary.plan.overload.rounds);
    // The daemon's own count of answers agrees that it was loaded.
    expect(counts.daemonAnswers).toBeGreaterThan(counts.requests.imdsSequence);

    // The accounting covered every generator, each of which drained: nothing was left in flight.
    const accounting = summary.checks.find((c) => c.name.startsWith('every request of the load accounted for'))!.detail as {
      generators: Record<string, { sent: number; answered: number; unanswered: number; drainedThreads: string }>;
      daemon: { byStatus: Record<string, { daemon: number; clientsRead: number }> };
    };
    expect(Object.keys(accounting.generators).sort()).toEqual(['badRequests', 'containerChurn', 'imdsSequence', 'tokenFlood']);
    for (const [name, g] of Object.entries(accounting.generators)) {
      expect(g.unanswered, name).toBe(0);
      expect(g.answered, name).toBe(g.sent);
      expect(g.drainedThreads, name).toBe('1 of 1');
    }
    // Statuses the raw-socket client cannot leave unknown match exactly, e.g. the bad requests' 404s.
    expect(accounting.daemon.byStatus['404']!.daemon).toBe(accounting.daemon.byStatus['404']!.clientsRead);
    expect(accounting.daemon.byStatus['404']!.daemon).toBeGreaterThan(1_000);

    // Every bad-request class was sent, and the overload phase really went past the cap.
    const bad = summary.checks.find((c) => c.name === 'bad requests answered with their documented status')!.detail as {
      sentByExpectedStatus: Record<string, number>;
    };
    expect(Object.keys(bad.sentByExpectedStatus).sort()).toEqual(['400', '401', '403', '404', '405', '413', '414']);
    const overload = summary.checks.find((c) => c.name === 'overload answered with 503 + Retry-After, quickly')!.detail as {
      cap: number;
      maxAcceptedSeen: number;
      answers: { total: number };
      withinCap: { total: number; served: number };
    };
    expect(overload.maxAcceptedSeen).toBeGreaterThan(overload.cap);
    // Both kinds of connection were asked: those opened past the cap (503) and those held from before (served).
    expect(overload.answers.total).toBeGreaterThan(100);
    expect(overload.withinCap.total).toBeGreaterThan(100);
    expect(overload.withinCap.served).toBe(overload.withinCap.total);
    // Credentials changed hands under load (reloads), and each sample checked them.
    const served = summary.checks.find((c) => c.name === 'credentials served correctly all along (checked at every sample)')!.detail as {
      samplesChecked: number;
      distinctKeysServed: number;
    };
    expect(served.samplesChecked).toBe(counts.loadSamples);
    expect(served.distinctKeysServed).toBeGreaterThanOrEqual(2);
  });
});
