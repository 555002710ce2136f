import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publishSourceWarning } from '../../src/sources/source-warnings.js';
import { type Chain, type InProcessDaemon, startChain, startInProcess } from '../support/chain.js';

/**
 * A token source's warning (published on the source-warning channel, since sources may not hold
 * the logger) is a warn line in serve's log while the daemon runs, and nothing after it closed.
 */
describe('serve logs what token sources warn of', () => {
  let chain: Chain;
  let daemon: InProcessDaemon;
  let closed = false;

  beforeAll(async () => {
    chain = await startChain();
    daemon = await startInProcess(chain);
    await daemon.daemon.firstFetch;
  }, 30_000);
  afterAll(async () => {
    if (!closed) await daemon?.close();
    await chain?.close();
  });

  it('as one warn line with the code and the fix, until close', async () => {
    const warning = {
      code: 'ALIBABA_METADATA_TOKENS_OPTIONAL',
      message: 'the ECS metadata server answers reads without a session token',
      fix: 'require tokens',
    };
    publishSourceWarning(warning);
    const lines = daemon.logs.map((l) => JSON.parse(l) as { level: string; msg: string; code?: string; fix?: string }).filter((l) => l.code === warning.code);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'warn', msg: warning.message, fix: warning.fix });
    const count = daemon.logs.length;
    await daemon.close();
    closed = true;
    publishSourceWarning(warning);
    expect(daemon.logs.slice(count).filter((l) => l.includes(warning.code))).toEqual([]);
  });
});
