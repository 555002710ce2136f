import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NODE, nodePackage, sha256File } from './node-binary.mjs';
import { run } from './run.mjs';

/**
 * CycloneDX SBOM of the production dependencies (@cyclonedx/cyclonedx-npm, reproducible mode: no
 * timestamp, no random serial number), plus the one thing npm does not know is in the binary: the
 * embedded Node.js, one component per architecture, with its package tarball's SHA-256.
 */
export function buildSbom({ repoRoot, arches, out }) {
  const raw = join(repoRoot, 'node_modules', '.bin', 'cyclonedx-npm');
  const json = run(raw, ['--omit', 'dev', '--output-reproducible', '--output-format', 'JSON', '--output-file', '-', '--spec-version', '1.6'], {
    cwd: repoRoot,
  });
  const bom = JSON.parse(json.toString('utf8'));
  const root = bom.metadata?.component?.['bom-ref'];
  const nodeRefs = [];
  for (const arch of arches) {
    const { name } = NODE.packages[arch];
    const ref = `embedded-node|${name}@${NODE.version}`;
    nodeRefs.push(ref);
    bom.components.push({
      type: 'platform',
      'bom-ref': ref,
      group: '',
      name: 'node',
      version: NODE.version,
      description: `Node.js ${NODE.version}, the runtime embedded in the ${arch} single executable (from the npm package ${name})`,
      licenses: [{ license: { id: 'MIT' } }],
      purl: `pkg:npm/${name}@${NODE.version}`,
      hashes: [{ alg: 'SHA-256', content: sha256File(nodePackage(arch)) }],
      properties: [{ name: 'crosscred:embedded-in', value: arch }],
    });
  }
  if (root) {
    const entry = bom.dependencies?.find((d) => d.ref === root);
    if (entry) entry.dependsOn = [...(entry.dependsOn ?? []), ...nodeRefs].sort();
  }
  writeFileSync(out, `${JSON.stringify(bom, null, 2)}\n`);
  return JSON.parse(readFileSync(out, 'utf8'));
}
