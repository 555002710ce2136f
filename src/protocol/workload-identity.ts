import { type JwtShape, STS_MAX_TOKEN_LENGTH } from './jwt-shape.js';
import { SERVICE_ACCOUNT_SUBJECT } from './pod-identity.js';

/**
 * Who a web-identity token says the workload is, and the templates that turn that into STS session
 * names and session-tag values (#18). Two products read it: `serve` (its roles and their chains)
 * and the node agent (each pod's session name). Two products write what it reads: Kubernetes (the
 * `kubernetes.io` claim of a projected ServiceAccount token) and `crosscred issuer` (the attested
 * facts of a VM, in ATTESTATION_CLAIM).
 *
 * The identity is read from the very token STS is handed in the same exchange: if its signature
 * or claims are false, STS refuses the web-identity step and nothing built from them is ever sent.
 * (The node agent checks the token's shape and claims before that too.) No value comes from a
 * request, a header or the environment.
 */

/** The claim `crosscred issuer` writes the attested facts of a VM into (named by a URL, RFC 7519 §4.2). */
export const ATTESTATION_CLAIM = 'https://crosscred.dev/claims';

/** The claim STS AssumeRoleWithWebIdentity reads session tags from. */
export const AWS_TAGS_CLAIM = 'https://aws.amazon.com/tags';

/** The variables a template may name, and where each comes from. */
export const TEMPLATE_VARIABLES = {
  namespace: 'the Kubernetes namespace (kubernetes.io claim, or the ServiceAccount subject)',
  serviceAccount: 'the Kubernetes ServiceAccount name',
  pod: 'the Kubernetes pod name (a token bound to a pod)',
  podUid: "the pod's uid",
  account: "the VM's cloud account id, as crosscred issuer attested it",
  instance: "the VM's instance id, as crosscred issuer attested it",
  region: "the VM's region, as crosscred issuer attested it",
  cloud: 'the cloud crosscred issuer attested the VM in (alibaba, tencent)',
  host: "this host's name (the machine crosscred runs on, not a claim of the token)",
} as const;

export type TemplateVariable = keyof typeof TEMPLATE_VARIABLES;

/** What a token says about its workload; a field is absent when the token does not say it. */
export type WorkloadIdentity = Readonly<Partial<Record<TemplateVariable, string>>>;

/** Bounds on a template, so a config file cannot make one expensive: STS's values are short. */
export const MAX_TEMPLATE_LENGTH = 256;

const PLACEHOLDER = /\{([^{}]*)\}/g;

/** A template, checked: its literal text and the variables it names, in order. */
export interface SessionTemplate {
  readonly text: string;
  readonly variables: readonly TemplateVariable[];
}

/**
 * Parses `text` (`{namespace}.{pod}`, `payments-{account}`): a problem in words, or the template.
 * A brace outside a `{variable}` is refused: no STS value may hold one, so it can only be a typo.
 */
export function parseTemplate(text: string): SessionTemplate | { readonly problem: string } {
  if (text.length > MAX_TEMPLATE_LENGTH) return { problem: `is longer than ${MAX_TEMPLATE_LENGTH} characters` };
  const variables: TemplateVariable[] = [];
  for (const [, name] of text.matchAll(PLACEHOLDER)) {
    if (!Object.hasOwn(TEMPLATE_VARIABLES, name!)) {
      return {
        problem: `names {${name}}, which is not one of ${Object.keys(TEMPLATE_VARIABLES)
          .map((v) => `{${v}}`)
          .join(', ')}`,
      };
    }
    variables.push(name as TemplateVariable);
  }
  if (/[{}]/.test(text.replace(PLACEHOLDER, ''))) return { problem: 'has a brace outside a {variable}' };
  return { text, variables };
}

/** True when the text names a variable, so its value depends on the token. */
export function isTemplate(text: string): boolean {
  return /\{[^{}]*\}/.test(text);
}

/**
 * The template filled in from `identity`: the text, or the variables the token did not carry.
 * Values are inserted as they are; the caller makes the result fit the STS field it goes to.
 */
export function renderTemplate(
  template: SessionTemplate,
  identity: WorkloadIdentity,
): { readonly value: string } | { readonly missing: readonly TemplateVariable[] } {
  const missing = template.variables.filter((v) => identity[v] === undefined || identity[v] === '');
  if (missing.length > 0) return { missing: [...new Set(missing)] };
  return { value: template.text.replace(PLACEHOLDER, (_, name: TemplateVariable) => identity[name]!) };
}

/**
 * The workload identity in a token's claims (from readJwtShape's payload, or any decoded claims),
 * plus `host`. A Kubernetes token gives namespace, ServiceAccount and pod; a token of crosscred
 * issuer gives account, instance, region and cloud. The `kubernetes.io` claim is believed only
 * where it agrees with `sub`, as the node agent's admission requires.
 */
export function workloadIdentityOf(payload: JwtShape['payload'], host?: string): WorkloadIdentity {
  const out: Partial<Record<TemplateVariable, string>> = {};
  if (host) out.host = host;
  const sub = typeof payload['sub'] === 'string' ? SERVICE_ACCOUNT_SUBJECT.exec(payload['sub']) : null;
  if (sub) {
    out.namespace = sub[1]!;
    out.serviceAccount = sub[2]!;
    const kubernetes = objectOf(payload['kubernetes.io']);
    const agrees = kubernetes !== undefined && (kubernetes['namespace'] === undefined || kubernetes['namespace'] === sub[1]);
    const pod = agrees ? objectOf(kubernetes['pod']) : undefined;
    if (typeof pod?.['name'] === 'string' && pod['name'] !== '') out.pod = pod['name'];
    if (typeof pod?.['uid'] === 'string' && pod['uid'] !== '') out.podUid = pod['uid'];
  }
  const attested = objectOf(payload[ATTESTATION_CLAIM]);
  if (attested) {
    const take = (variable: TemplateVariable, claim: string) => {
      const v = attested[claim];
      if (typeof v === 'string' && v !== '') out[variable] = v;
    };
    take('account', 'account_id');
    take('instance', 'instance_id');
    take('region', 'region');
    take('cloud', 'cloud');
  }
  return out;
}

function objectOf(value: unknown): Readonly<Record<string, unknown>> | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
}

/**
 * The workload identity of a compact JWT, read from its payload without checking anything else
 * (the token source checked its shape; STS checks its signature). A token that cannot be decoded
 * carries no identity, only `host`.
 */
export function workloadIdentityOfToken(token: string, host?: string): WorkloadIdentity {
  const parts = token.length <= STS_MAX_TOKEN_LENGTH ? token.split('.') : [];
  if (parts.length !== 3) return host ? { host } : {};
  try {
    const payload: unknown = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
    if (payload === null || typeof payload !== 'object' || Array.isArray(payload)) return host ? { host } : {};
    return workloadIdentityOf(payload as Record<string, unknown>, host);
  } catch {
    return host ? { host } : {};
  }
}
