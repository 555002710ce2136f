import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { promisify } from 'node:util';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { Role } from 'kubernetes-models/rbac.authorization.k8s.io/v1/Role';
import { RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';

const run = promisify(execFile);

/**
 * The real kustomize, as `kubectl kustomize`: the machine image carries the Google Cloud SDK's
 * `kubectl` package (kubectl 1.32, kustomize v5.5 built in). Debian's own kubernetes-client
 * (kubectl 1.20) embeds kustomize v2, which knows neither the `labels` nor the `patches` field, so
 * it is refused rather than trusted to render half of a kustomization.
 */
export const KUBECTL = 'kubectl';
export const MIN_KUSTOMIZE_MAJOR = 5;

/** One rendered Kubernetes object, as parsed from kustomize's output. */
export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; [key: string]: unknown };
  [key: string]: unknown;
}

/** The kustomize version embedded in kubectl (e.g. "v5.5.0"), or why it cannot be used. */
export async function kustomizeVersion(): Promise<{ version: string } | { problem: string }> {
  let out: string;
  try {
    ({ stdout: out } = await run(KUBECTL, ['version', '--client', '-o', 'json'], { timeout: 20_000 }));
  } catch (err) {
    return { problem: `${KUBECTL} version --client failed: ${(err as Error).message}` };
  }
  const version = (JSON.parse(out) as { kustomizeVersion?: string }).kustomizeVersion;
  const major = Number(/^v(\d+)\./.exec(version ?? '')?.[1]);
  if (!version || !(major >= MIN_KUSTOMIZE_MAJOR)) {
    return { problem: `${KUBECTL} embeds kustomize ${version ?? '(none)'}; these manifests need v${MIN_KUSTOMIZE_MAJOR} or later` };
  }
  return { version };
}

/** Renders a kustomization directory and parses every document of the output. */
export async function renderKustomize(dir: string): Promise<KubeObject[]> {
  let stdout: string;
  try {
    ({ stdout } = await run(KUBECTL, ['kustomize', dir], { timeout: 60_000, maxBuffer: 16 << 20 }));
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${KUBECTL} kustomize ${dir} failed: ${e.message}\n${e.stderr ?? ''}`);
  }
  const objects: KubeObject[] = [];
  for (const doc of parseAllDocuments(stdout)) {
    if (doc.errors.length > 0) throw new Error(`kustomize output for ${dir} is not valid YAML: ${doc.errors[0]!.message}`);
    const value = doc.toJS() as KubeObject | null;
    if (value !== null) objects.push(value);
  }
  return objects;
}

/**
 * Validation against the Kubernetes API schemas, offline, in two passes:
 *
 * 1. kubernetes-models (generated from the Kubernetes 1.33 OpenAPI document): each object's
 *    `validate()` checks it with that document's JSON schema: types, required fields, enums, formats.
 *    Like the OpenAPI document itself, that schema allows unknown fields.
 * 2. So the same package's TypeScript declarations (generated from the same document) are used as a
 *    strict schema: each object becomes an object literal typed with its kind's interface, and
 *    TypeScript's excess-property check rejects fields the API does not have — what the API
 *    server's strict field validation (kubectl's default) would refuse.
 */
const MODELS: Record<string, { model: new (data: never) => { validate(): void }; module: string; type: string }> = {
  'v1/ConfigMap': { model: ConfigMap, module: 'kubernetes-models/v1/ConfigMap', type: 'IConfigMap' },
  'v1/ServiceAccount': { model: ServiceAccount, module: 'kubernetes-models/v1/ServiceAccount', type: 'IServiceAccount' },
  'apps/v1/Deployment': { model: Deployment, module: 'kubernetes-models/apps/v1/Deployment', type: 'IDeployment' },
  'rbac.authorization.k8s.io/v1/Role': { model: Role, module: 'kubernetes-models/rbac.authorization.k8s.io/v1/Role', type: 'IRole' },
  'rbac.authorization.k8s.io/v1/RoleBinding': {
    model: RoleBinding,
    module: 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding',
    type: 'IRoleBinding',
  },
};

export function label(object: KubeObject): string {
  return `${object.apiVersion}/${object.kind} ${object.metadata?.name}`;
}

/** Every schema problem of every object, each prefixed with the object it is in; empty when all are valid. */
export function schemaProblems(objects: readonly KubeObject[]): string[] {
  const problems: string[] = [];
  const typed: { object: KubeObject; module: string; type: string }[] = [];
  for (const object of objects) {
    const entry = MODELS[`${object.apiVersion}/${object.kind}`];
    if (!entry) {
      problems.push(`${label(object)}: no schema known for this kind here (add it to MODELS)`);
      continue;
    }
    try {
      // On a copy: a model may fill in fields (apiVersion, kind) of the data it is given.
      new entry.model(structuredClone(object) as never).validate();
    } catch (err) {
      problems.push(`${label(object)}: ${(err as Error).message}`);
    }
    typed.push({ object, module: entry.module, type: entry.type });
  }
  problems.push(...strictFieldProblems(typed));
  return problems;
}

const CHECK_DIR = '/__crosscred_kubernetes_schema_check__';
const declarationCache = new Map<string, ts.SourceFile>();

function strictFieldProblems(typed: readonly { object: KubeObject; module: string; type: string }[]): string[] {
  // The declarations of the very package whose validators ran above.
  const modelsDir = dirname(createRequire(import.meta.url).resolve('kubernetes-models'));
  const files = new Map<string, { text: string; object: KubeObject }>();
  typed.forEach(({ object, module, type }, i) => {
    const text = `import type { ${type} } from '${module}';\nexport const object: ${type} = ${JSON.stringify(object, null, 2)};\n`;
    files.set(`${CHECK_DIR}/object-${i}.ts`, { text, object });
  });
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    lib: ['lib.es2022.d.ts'],
    types: [],
    paths: { 'kubernetes-models/*': [`${modelsDir}/*`] },
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, languageVersion, ...rest) => {
    const file = files.get(name);
    if (file) return ts.createSourceFile(name, file.text, languageVersion);
    // The declaration files never change during a run: parse each once, not once per call.
    let parsed = declarationCache.get(name);
    if (!parsed) {
      parsed = getSourceFile.call(host, name, languageVersion, ...rest);
      if (parsed) declarationCache.set(name, parsed);
    }
    return parsed;
  };
  host.fileExists = (name) => files.has(name) || fileExists.call(host, name);
  host.readFile = (name) => files.get(name)?.text ?? readFile.call(host, name);
  const program = ts.createProgram([...files.keys()], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const file = d.file && files.get(d.file.fileName);
    const where = d.file && d.start !== undefined ? `line ${d.file.getLineAndCharacterOfPosition(d.start).line + 1}: ` : '';
    return `${file ? label(file.object) : 'schema check'}: ${where}${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
  });
}
