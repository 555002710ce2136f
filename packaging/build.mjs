#!/usr/bin/env node
// `npm run package`: the single executables, .rpm, .deb and tarballs for x86_64 and aarch64, the
// SBOM and SHA256SUMS, into release/. See docs/packaging.md.
//
//   node packaging/build.mjs [--arch x64,arm64] [--only binary,tar,rpm,deb,sbom] [--out DIR]
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { archInfo } from './arch.mjs';
import { artifactNames, SBOM_NAME, SUMS_NAME } from './artifacts.mjs';
import { bundle } from './bundle.mjs';
import { extractNode } from './node-binary.mjs';
import { buildDeb, buildRpm, buildTarball, stagePackageRoot } from './packages.mjs';
import { buildSbom } from './sbom.mjs';
import { injectBlob, seaBlob } from './sea.mjs';

const REPO = resolve(new URL('..', import.meta.url).pathname);
const KINDS = ['binary', 'tar', 'rpm', 'deb', 'sbom'];

const { values } = parseArgs({
  options: {
    arch: { type: 'string', default: 'x64,arm64' },
    only: { type: 'string', default: KINDS.join(',') },
    out: { type: 'string', default: join(REPO, 'release') },
  },
});
const arches = values.arch.split(',');
for (const a of arches) archInfo(a);
const kinds = new Set(values.only.split(','));
for (const k of kinds) if (!KINDS.includes(k)) throw new Error(`unknown --only kind "${k}" (${KINDS.join(', ')})`);
const out = resolve(values.out);

const { version } = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'));
// Every time written into an artefact: SOURCE_DATE_EPOCH if set, else the last commit's.
const epoch = Number(process.env.SOURCE_DATE_EPOCH ?? execFileSync('git', ['log', '-1', '--format=%ct'], { cwd: REPO, encoding: 'utf8' }).trim());
if (!Number.isInteger(epoch) || epoch <= 0) throw new Error('no SOURCE_DATE_EPOCH and no git commit to take one from');

const hostArch = process.arch === 'arm64' ? 'arm64' : 'x64';
const work = mkdtempSync(join(tmpdir(), 'crosscred-package-'));
const started = Date.now();
const step = (what) => process.stderr.write(`[package ${((Date.now() - started) / 1000).toFixed(1)}s] ${what}\n`);
try {
  mkdirSync(out, { recursive: true });
  step(`bundling src/cli/main.ts (crosscred ${version})`);
  const bundled = join(work, 'crosscred.cjs');
  await bundle({ entry: join(REPO, 'src/cli/main.ts'), outfile: bundled, version });
  // The blob's format belongs to the Node version that runs it: made by the pinned Node itself,
  // the host's architecture's build (the blob holds no machine code, so it serves both).
  const hostNode = extractNode(hostArch, join(work, `node-${hostArch}`)).node;
  const blob = seaBlob({ hostNode, bundle: bundled, workDir: work });

  for (const arch of arches) {
    const names = artifactNames(version, arch);
    const node = extractNode(arch, join(work, `node-${arch}`));
    step(`${arch}: strip, then inject the blob`);
    const binary = join(out, names.binary);
    await injectBlob({ arch, node: node.node, blob, out: binary });
    const stage = join(work, `root-${arch}`);
    stagePackageRoot({ root: stage, binary, nodeLicense: node.license, epoch });
    if (kinds.has('tar')) {
      step(`${arch}: ${names.tar}`);
      buildTarball({ arch, version, binary, nodeLicense: node.license, workDir: work, out: join(out, names.tar), epoch });
    }
    if (kinds.has('rpm')) {
      step(`${arch}: ${names.rpm}`);
      buildRpm({ arch, version, stage, workDir: work, outDir: out, epoch });
    }
    if (kinds.has('deb')) {
      step(`${arch}: ${names.deb}`);
      buildDeb({ arch, version, stage, workDir: work, out: join(out, names.deb), epoch });
    }
  }
  if (kinds.has('sbom')) {
    step(SBOM_NAME(version));
    buildSbom({ repoRoot: REPO, arches, out: join(out, SBOM_NAME(version)) });
  }
  // Over everything in the folder, including artefacts of an earlier run with other --arch/--only.
  const files = readdirSync(out)
    .filter((f) => f !== SUMS_NAME && !f.startsWith('.') && statSync(join(out, f)).isFile())
    .sort();
  const sums = files
    .map(
      (f) =>
        `${createHash('sha256')
          .update(readFileSync(join(out, f)))
          .digest('hex')}  ${f}\n`,
    )
    .join('');
  writeFileSync(join(out, SUMS_NAME), sums);
  step(`done: ${files.length} files in ${out}`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
