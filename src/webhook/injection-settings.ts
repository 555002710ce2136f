import { parseRoleArn } from '../platform/aws/role-arn.js';
import type { ServiceAccount } from '../platform/kubernetes/service-accounts.js';
import {
  ANNOTATIONS,
  DEFAULT_AUDIENCE,
  DEFAULT_TOKEN_EXPIRATION_SECONDS,
  EKS_ANNOTATIONS,
  INJECTION_MODES,
  type InjectionMode,
  MIN_TOKEN_EXPIRATION_SECONDS,
} from '../protocol/pod-identity.js';

/** What a ServiceAccount's annotations ask the webhook to inject. */
export interface InjectionSettings {
  readonly roleArn: string;
  readonly audience: string;
  readonly expirationSeconds: number;
  readonly mode: InjectionMode;
  /** Why the expiration was raised, for a warning. */
  readonly clamped?: string;
}

/** The API server refuses a projected token longer than 2^32 seconds. */
const MAX_TOKEN_EXPIRATION_SECONDS = 2 ** 32;
/** Audiences are URLs or short names; the bound keeps a denial message short. */
const MAX_AUDIENCE_CHARS = 1024;

/**
 * The audience annotation `key` (else `fallback`), trimmed: one audience, or the problem that
 * denies the pod. Shared by every cloud's annotations (other-cloud-settings.ts).
 */
export function readAudience(
  a: Readonly<Record<string, string>>,
  key: string,
  fallback: string,
  who: string,
): string | { readonly kind: 'problem'; readonly problem: string } {
  const audience = (a[key] ?? fallback).trim();
  if (audience === '' || audience.length > MAX_AUDIENCE_CHARS || /[\s,]/.test(audience))
    return { kind: 'problem', problem: `${who}: annotation ${key} must be one audience without spaces or commas` };
  return audience;
}

/**
 * Reads the ServiceAccount's annotations: ours first, then IRSA's (`eks.amazonaws.com/…`, which
 * Helm charts already set). `none` when there is no role: the pod is not ours to change.
 * `problem` when an annotation is present but unusable: the pod is denied, never silently left
 * without the credentials it opted into.
 */
export function injectionSettings(
  account: ServiceAccount,
  defaultMode: InjectionMode,
): { kind: 'settings'; settings: InjectionSettings } | { kind: 'none' } | { kind: 'problem'; problem: string } {
  const a = account.annotations;
  const roleKey = a[ANNOTATIONS.roleArn] !== undefined ? ANNOTATIONS.roleArn : a[EKS_ANNOTATIONS.roleArn] !== undefined ? EKS_ANNOTATIONS.roleArn : undefined;
  if (roleKey === undefined) return { kind: 'none' };
  const who = `ServiceAccount ${account.namespace}/${account.name}`;
  const roleArn = a[roleKey]!.trim();
  const parsed = parseRoleArn(roleArn);
  if ('problem' in parsed) return { kind: 'problem', problem: `${who}: annotation ${roleKey} ${parsed.problem}` };

  const audienceKey = a[ANNOTATIONS.audience] !== undefined ? ANNOTATIONS.audience : EKS_ANNOTATIONS.audience;
  const audience = readAudience(a, audienceKey, DEFAULT_AUDIENCE, who);
  if (typeof audience !== 'string') return audience;

  const expirationKey = a[ANNOTATIONS.tokenExpiration] !== undefined ? ANNOTATIONS.tokenExpiration : EKS_ANNOTATIONS.tokenExpiration;
  const expirationText = a[expirationKey]?.trim();
  let expirationSeconds = DEFAULT_TOKEN_EXPIRATION_SECONDS;
  let clamped: string | undefined;
  if (expirationText !== undefined) {
    if (!/^\d{1,10}$/.test(expirationText) || Number(expirationText) > MAX_TOKEN_EXPIRATION_SECONDS)
      return { kind: 'problem', problem: `${who}: annotation ${expirationKey} must be a whole number of seconds (at least ${MIN_TOKEN_EXPIRATION_SECONDS})` };
    expirationSeconds = Number(expirationText);
    // Kubernetes refuses a projected token shorter than 10 minutes; the IRSA webhook raises it the same way.
    if (expirationSeconds < MIN_TOKEN_EXPIRATION_SECONDS) {
      clamped = `${who}: ${expirationKey} ${expirationSeconds} raised to ${MIN_TOKEN_EXPIRATION_SECONDS} s, the shortest token Kubernetes issues`;
      expirationSeconds = MIN_TOKEN_EXPIRATION_SECONDS;
    }
  }

  const modeText = a[ANNOTATIONS.mode]?.trim();
  if (modeText !== undefined && !(INJECTION_MODES as readonly string[]).includes(modeText))
    return { kind: 'problem', problem: `${who}: annotation ${ANNOTATIONS.mode} must be one of ${INJECTION_MODES.join(', ')}` };
  const mode = (modeText as InjectionMode | undefined) ?? defaultMode;
  return { kind: 'settings', settings: { roleArn, audience, expirationSeconds, mode, ...(clamped ? { clamped } : {}) } };
}
