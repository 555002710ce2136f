import { readFileSync } from 'node:fs';
import { build } from 'esbuild';

/**
 * Bundles the CLI into one CommonJS file for the single executable, which can load no file from
 * disk: every module of crosscred and of its dependencies must be in this one script.
 *
 * - `conditions: []` drops esbuild's default `module` condition, so packages that publish both
 *   (the AWS SDK's @smithy/*) resolve to their CommonJS build through `node`/`require`, as under
 *   Node itself, and not to their ESM build, whose `await import("node:http")` Node 20's
 *   single-executable runtime refuses (ERR_VM_DYNAMIC_IMPORT_CALLBACK_MISSING, with the code
 *   cache). The ESM and CommonJS builds are the same code otherwise.
 * - `supported: { 'dynamic-import': false }` turns every remaining `import()` (crosscred's lazy
 *   command loading, the AWS SDK's Lambda-only `import("node:async_hooks")`, @redis/client's
 *   optional `import("@node-rs/xxhash")`) into a `require`, which the embedded runtime serves for
 *   the bundled modules and for node: built-ins alike, on Node 20 and 24.
 * - CROSSCRED_BUILD_VERSION: the version as a constant (src/cli/version.ts).
 */
export async function bundle({ entry, outfile, version }) {
  const result = await build({
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20.19',
    conditions: [],
    supported: { 'dynamic-import': false },
    define: { CROSSCRED_BUILD_VERSION: JSON.stringify(version) },
    // tr46 (tencentcloud-sdk-nodejs-common → node-fetch → whatwg-url) requires Node's deprecated
    // built-in `punycode`. Node warns (DEP0040) on every start when that require comes from code
    // outside node_modules, which the bundle is: `crosscred doctor` printed the warning. The
    // userland package of the same code (a dependency, `punycode/`) is bundled instead.
    alias: { punycode: 'punycode/' },
    // Folds `typeof "<version>" === 'string'` so that version.ts's package.json branch is dropped.
    // Its import.meta, which CommonJS lacks, is still warned about before the fold: that warning
    // is silenced, and the check below proves no use of import.meta is left in the bundle.
    minifySyntax: true,
    logOverride: { 'empty-import-meta': 'silent' },
    // Error and class names stay what the source says (logs, `describe()`).
    keepNames: true,
    legalComments: 'none',
    logLevel: 'warning',
    metafile: true,
  });
  if (result.warnings.length > 0) throw new Error(`esbuild warned ${result.warnings.length} time(s); the bundle must build cleanly`);
  const code = readFileSync(outfile, 'utf8');
  // esbuild writes `import_meta.url` for an import.meta it had to empty, and would leave an
  // import() only where it could not turn it into a require. It prints every string literal in
  // double quotes; single-quoted import('…') are JSDoc type comments (undici's).
  const leftovers = [...code.matchAll(/\bimport_meta\d*\.\w+|\bimport\(\s*"[^"]*"\s*\)/g)].map((m) => m[0]);
  if (leftovers.length > 0) throw new Error(`the bundle still holds ${[...new Set(leftovers)].join(', ')}`);
  return result.metafile;
}
