import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import postject from 'postject';
import { archInfo } from './arch.mjs';
import { run } from './run.mjs';

/** The fuse Node looks for to know a blob was injected (node's src/node_sea.cc, the same in 20 and 24). */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

/**
 * The single-executable blob, made by the same Node version that will run it (the blob's format is
 * that version's). It holds the script only, no V8 code cache and no snapshot: those are specific
 * to one CPU architecture and to the V8 flags they were built with (a cache built without
 * NODE_OPTIONS' flags is rejected at run time), and this blob serves both architectures.
 */
export function seaBlob({ hostNode, bundle, workDir }) {
  // The blob records the script's path as given (it names the script in stack traces): relative
  // names, with the work directory as the current one, keep the temporary directory's random name
  // out of it and the bytes the same from run to run.
  if (dirname(bundle) !== workDir) throw new Error('the bundle must be in the work directory');
  const config = join(workDir, 'sea-config.json');
  writeFileSync(
    config,
    JSON.stringify({ main: basename(bundle), output: 'crosscred.blob', disableExperimentalSEAWarning: true, useCodeCache: false, useSnapshot: false }),
  );
  run(hostNode, ['--experimental-sea-config', 'sea-config.json'], { cwd: workDir });
  return join(workDir, 'crosscred.blob');
}

/**
 * Copies `node` to `out`, strips it, then injects the blob. Stripping comes first: strip rewrites
 * the sections and would drop or corrupt the injected note afterwards.
 */
export async function injectBlob({ arch, node, blob, out }) {
  copyFileSync(node, out);
  run(archInfo(arch).strip, ['--strip-all', out]);
  await postject.inject(out, 'NODE_SEA_BLOB', readFileSync(blob), { sentinelFuse: SEA_FUSE });
}
