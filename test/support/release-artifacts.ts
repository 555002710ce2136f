import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { type Arch, type ArtifactKind, artifactNames, SBOM_NAME, SUMS_NAME } from '../../packaging/artifacts.mjs';
import { REPO_ROOT } from './chain.js';

export type { Arch, ArtifactKind };
export type ReleaseKind = ArtifactKind | 'sbom';

const run = promisify(execFile);

/**
 * What `npm run package` (packaging/build.mjs) would write, built once per content and shared by
 * every test that needs an artefact (test/e2e/packages.test.ts, the nspawn systemd test).
 *
 * The cache is keyed by the bytes the build reads (src/, packaging/, systemd/, package.json,
 * package-lock.json), so a change to any of them builds again and nothing else does. It lives in
 * CROSSCRED_RELEASE_CACHE, else /var/cache/crosscred-release when writable (CI runs as root), else
 * the temp directory. Two test files asking at once (vitest runs two workers) take turns through
 * a lock directory; the second finds the first one's artefacts.
 */
export interface Release {
  readonly dir: string;
  readonly version: string;
  /** Absolute paths of the requested artefacts, per architecture. */
  readonly files: Partial<Record<Arch, Partial<Record<ArtifactKind, string>>>>;
  readonly sbom?: string;
  readonly sums: string;
}

const INPUTS = ['src', 'packaging', 'systemd', 'package.json', 'package-lock.json'];
/** A build takes about a minute per architecture here; a lock older than this was left by a killed run. */
const STALE_LOCK_MS = 15 * 60_000;
const LOCK_POLL_MS = 1_000;
/** Cached builds of other contents are removed once this old (each is about 500 MB); a run that is still using one has long finished. */
const PRUNE_AFTER_MS = 2 * 60 * 60_000;

export function releaseCacheRoot(): string {
  if (process.env['CROSSCRED_RELEASE_CACHE']) return process.env['CROSSCRED_RELEASE_CACHE'];
  const system = '/var/cache/crosscred-release';
  try {
    mkdirSync(system, { recursive: true });
    accessSync(system, constants.W_OK);
    return system;
  } catch {
    return join(tmpdir(), 'crosscred-release');
  }
}

/** The content key: a hash of every input file's path and bytes. */
export function releaseKey(): string {
  const hash = createHash('sha256');
  const add = (path: string) => {
    const s = statSync(path);
    if (s.isDirectory()) {
      for (const name of readdirSync(path).sort()) add(join(path, name));
    } else {
      hash.update(`${relative(REPO_ROOT, path)}\0${s.size}\0`);
      hash.update(readFileSync(path));
    }
  };
  for (const input of INPUTS) add(join(REPO_ROOT, input));
  return hash.digest('hex').slice(0, 24);
}

/** Builds what is missing of the requested artefacts (all kinds by default) and returns their paths. */
export async function ensureRelease(options: { arch?: readonly Arch[]; kinds?: readonly ReleaseKind[] } = {}): Promise<Release> {
  const arches = options.arch ?? ['x64'];
  const kinds = options.kinds ?? ['binary', 'tar', 'rpm', 'deb', 'sbom'];
  const { version } = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  const root = releaseCacheRoot();
  const key = releaseKey();
  const dir = join(root, key);
  await mkdir(root, { recursive: true });
  pruneOthers(root, key);

  const wanted = (): { arch: Arch; kind: ArtifactKind; path: string }[] =>
    arches.flatMap((arch) =>
      kinds.filter((k): k is ArtifactKind => k !== 'sbom').map((kind) => ({ arch, kind, path: join(dir, artifactNames(version, arch)[kind]) })),
    );
  const sbomPath = join(dir, SBOM_NAME(version));
  const missing = () => [...wanted().filter((w) => !existsSync(w.path)), ...(kinds.includes('sbom') && !existsSync(sbomPath) ? [{ kind: 'sbom' }] : [])];

  if (missing().length > 0) {
    await withLock(`${dir}.lock`, async () => {
      const still = missing();
      if (still.length === 0) return;
      const only = [...new Set(['binary', ...still.map((m) => m.kind)])].join(',');
      try {
        await run(process.execPath, [join(REPO_ROOT, 'packaging/build.mjs'), '--arch', arches.join(','), '--only', only, '--out', dir], {
          cwd: REPO_ROOT,
          maxBuffer: 16 * 1024 * 1024,
          timeout: 15 * 60_000,
        });
      } catch (err) {
        const e = err as { stderr?: string; message: string };
        throw new Error(`packaging/build.mjs failed: ${e.message}\n${e.stderr ?? ''}`);
      }
    });
  }
  const files: Release['files'] = {};
  for (const w of wanted()) files[w.arch] = { ...files[w.arch], [w.kind]: w.path };
  return { dir, version, files, sums: join(dir, SUMS_NAME), ...(kinds.includes('sbom') ? { sbom: sbomPath } : {}) };
}

async function withLock(lock: string, body: () => Promise<void>): Promise<void> {
  for (;;) {
    try {
      await mkdir(lock);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const age =
        Date.now() -
        (await stat(lock).then(
          (s) => s.mtimeMs,
          () => Date.now(),
        ));
      if (age > STALE_LOCK_MS) await rm(lock, { recursive: true, force: true });
      else await new Promise((r) => setTimeout(r, LOCK_POLL_MS));
    }
  }
  try {
    await body();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}

function pruneOthers(root: string, key: string): void {
  for (const name of readdirSync(root)) {
    if (name.startsWith(key)) continue;
    const path = join(root, name);
    try {
      if (Date.now() - statSync(path).mtimeMs > PRUNE_AFTER_MS) rmSync(path, { recursive: true, force: true });
    } catch {
      // Another run removed it first.
    }
  }
}
