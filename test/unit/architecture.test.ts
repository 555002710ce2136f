import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The import rules of docs/architecture.md, as `npm run check:architecture` runs them: the real
 * tree passes, and a tree with one wrong import of each kind fails, naming the rule it breaks.
 */
const REPO = resolve(import.meta.dirname, '../..');
const CONFIG = join(REPO, '.dependency-cruiser.cjs');
const DEPCRUISE = join(REPO, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');
const run = promisify(execFile);

interface Violation {
  readonly from: string;
  readonly to: string;
  readonly rule: { readonly name: string };
}

/** Runs the check in `cwd` on its src/ and returns what it reports. */
async function cruise(cwd: string): Promise<readonly Violation[]> {
  const { stdout } = await run(process.execPath, [DEPCRUISE, '--config', CONFIG, '--output-type', 'json', 'src'], { cwd, maxBuffer: 64 * 1024 * 1024 }).catch(
    // It exits non-zero when it finds violations; the JSON report is still on stdout.
    (err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }),
  );
  const report = JSON.parse(stdout) as { summary: { violations: Violation[] } };
  return report.summary.violations;
}

describe('the floor plan', () => {
  it('holds for the code as it is', async () => {
    const violations = await cruise(REPO);
    expect(violations.map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`)).toEqual([]);
  }, 60_000);

  describe('fails on a wrong import, naming the rule', () => {
    let tree: string;
    /** A scratch tree shaped like this repository: src/ plus the tsconfig the rules resolve with. */
    const write = async (files: Record<string, string>) => {
      for (const [path, text] of Object.entries(files)) {
        await mkdir(dirname(join(tree, path)), { recursive: true });
        await writeFile(join(tree, path), text);
      }
    };
    beforeAll(async () => {
      tree = await mkdtemp(join(tmpdir(), 'crosscred-architecture-'));
      await write({
        'tsconfig.json': JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true }, include: ['src'] }),
        // A leaf importing a product: up the floors.
        'src/core/clock.ts': "import type { Daemon } from '../serve/daemon.js';\nexport type Clock = Daemon;\n",
        'src/serve/daemon.ts': 'export interface Daemon { readonly up: boolean }\n',
        // One cloud importing another.
        'src/platform/alibaba/signer.ts': "import { tc3 } from '../tencent/tc3.js';\nexport const acs3 = tc3;\n",
        'src/platform/tencent/tc3.ts': 'export const tc3 = 1;\n',
        // A product importing another product.
        'src/issuer/server.ts': "import type { Routes } from '../serve/routes.js';\nexport type IssuerRoutes = Routes;\n",
        'src/serve/routes.ts': 'export type Routes = string;\n',
        // A circle of two files in one room.
        'src/http/listener.ts': "import { render } from './responses.js';\nexport const LIMITS = render;\n",
        'src/http/responses.ts': "import { LIMITS } from './listener.js';\nexport const render = () => LIMITS;\n",
        // A folder that is not on the plan, and an import of cli/.
        'src/gadgets/thing.ts': "import { main } from '../cli/main.js';\nexport const thing = main;\n",
        'src/cli/main.ts': 'export const main = 1;\n',
      });
    });
    afterAll(() => rm(tree, { recursive: true, force: true }));

    it('reports each kind of rule', async () => {
      const found = (await cruise(tree)).map((v) => `${v.rule.name}: ${v.from} -> ${v.to}`);
      expect(found).toEqual(
        expect.arrayContaining([
          'floor-core: src/core/clock.ts -> src/serve/daemon.ts',
          'one-cloud-never-imports-another: src/platform/alibaba/signer.ts -> src/platform/tencent/tc3.ts',
          'floor-platform-alibaba: src/platform/alibaba/signer.ts -> src/platform/tencent/tc3.ts',
          'products-never-import-each-other: src/issuer/server.ts -> src/serve/routes.ts',
          'floor-issuer: src/issuer/server.ts -> src/serve/routes.ts',
          'no-file-circles: src/http/listener.ts -> src/http/responses.ts',
          'rooms-on-the-plan: src/gadgets/thing.ts -> src/cli/main.ts',
          'nothing-imports-cli: src/gadgets/thing.ts -> src/cli/main.ts',
        ]),
      );
      // Type-only imports count: the core -> serve and issuer -> serve imports above are `import type`.
    }, 60_000);
  });
});
