import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { archInfo } from './arch.mjs';
import { run } from './run.mjs';

/** The pinned Node.js: version and the SHA-256 of each architecture's npm package tarball. */
export const NODE = JSON.parse(readFileSync(new URL('./node.json', import.meta.url), 'utf8'));

/**
 * Where downloaded Node packages are kept between builds (and between test runs, so a test never
 * fetches twice): CROSSCRED_NODE_CACHE, else /var/cache/crosscred-node when writable (root, CI),
 * else ~/.cache/crosscred-node.
 */
export function nodeCacheDir() {
  if (process.env.CROSSCRED_NODE_CACHE) return process.env.CROSSCRED_NODE_CACHE;
  const system = '/var/cache/crosscred-node';
  try {
    mkdirSync(system, { recursive: true });
    accessSync(system, constants.W_OK);
    return system;
  } catch {
    return join(homedir(), '.cache', 'crosscred-node');
  }
}

export function sha256File(path) {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** The verified package tarball of the pinned Node for `arch`, fetched with `npm pack` on first use. */
export function nodePackage(arch) {
  archInfo(arch);
  const { name, sha256 } = NODE.packages[arch];
  const cache = nodeCacheDir();
  mkdirSync(cache, { recursive: true });
  const file = join(cache, `${name}-${NODE.version}.tgz`);
  if (!existsSync(file)) {
    // Into a private directory first, checked, then renamed: a half-written or foreign tarball
    // never sits in the cache under the final name.
    const tmp = mkdtempSync(join(cache, '.download-'));
    try {
      run('npm', ['pack', `${name}@${NODE.version}`, '--pack-destination', tmp, '--silent']);
      const got = join(tmp, `${name}-${NODE.version}.tgz`);
      checkSha256(got, sha256);
      renameSync(got, file);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  checkSha256(file, sha256);
  return file;
}

function checkSha256(file, expected) {
  const actual = sha256File(file);
  if (actual !== expected) throw new Error(`${file}: SHA-256 ${actual}, but packaging/node.json pins ${expected}; refusing to embed it`);
}

/** Extracts the Node binary and its LICENSE from the verified package into `dir`. */
export function extractNode(arch, dir) {
  mkdirSync(dir, { recursive: true });
  run('tar', ['-xzf', nodePackage(arch), '-C', dir, '--strip-components=1', 'package/bin/node', 'package/LICENSE']);
  return { node: join(dir, 'bin', 'node'), license: join(dir, 'LICENSE') };
}
