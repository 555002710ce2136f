import { fitSessionName } from '../platform/aws/session-name.js';
import { type PodTokenIdentity, podSessionName } from '../protocol/pod-identity.js';
import { parseTemplate, renderTemplate, type SessionTemplate, type TemplateVariable, type WorkloadIdentity } from '../protocol/workload-identity.js';

/**
 * Each pod's STS session name (#18, point 4): `<namespace>.<pod>` by default, or the operator's
 * `--session-name-template` over the pod's admitted token. Either way the name is read only from
 * the token's names and uids, so one pod keeps one name across its token rotations and across
 * restarts of the agent, and CloudTrail shows the same session for it.
 */

/**
 * Why a template variable means nothing to the node agent. A pod's projected token carries only
 * the namespace, the ServiceAccount and the pod; the agent serves every pod of a node, so a fact of
 * the node itself would name them all alike.
 */
const NOT_FROM_A_POD_TOKEN: Readonly<Partial<Record<TemplateVariable, string>>> = {
  account: "a VM's cloud account, attested by crosscred issuer: a pod's token never carries it",
  instance: "a VM's instance id, attested by crosscred issuer: a pod's token never carries it",
  region: "a VM's region, attested by crosscred issuer: a pod's token never carries it",
  cloud: "the cloud crosscred issuer attested a VM in: a pod's token never carries it",
  host: "this node's name, not the pod's: every pod on the node would share it",
};

/** The variables a node agent's template may name: what a pod's projected token says. */
export const POD_TEMPLATE_VARIABLES: readonly TemplateVariable[] = ['namespace', 'serviceAccount', 'pod', 'podUid'];

/** `--session-name-template`, checked at start-up: the template, or a problem in words. */
export function parsePodSessionTemplate(text: string): SessionTemplate | { readonly problem: string } {
  const parsed = parseTemplate(text);
  if ('problem' in parsed) return parsed;
  for (const variable of parsed.variables) {
    const why = NOT_FROM_A_POD_TOKEN[variable];
    if (why !== undefined) return { problem: `names {${variable}}, ${why}; name only ${POD_TEMPLATE_VARIABLES.map((v) => `{${v}}`).join(', ')}` };
  }
  // A name with no variable is the same for every pod, which is what the session name is there to prevent.
  if (parsed.variables.length === 0) return { problem: 'names no variable, so every pod would get the same session name' };
  return parsed;
}

/** The template's view of an admitted token: built from what admission already checked, never re-read. */
export function podWorkloadIdentity(identity: PodTokenIdentity): WorkloadIdentity {
  return {
    namespace: identity.namespace,
    serviceAccount: identity.serviceAccount.name,
    ...(identity.pod !== undefined ? { pod: identity.pod.name } : {}),
    ...(identity.pod?.uid !== undefined ? { podUid: identity.pod.uid } : {}),
  };
}

/**
 * The session name of a pod: today's `podSessionName` with no template; with one, the rendered
 * template made to fit STS's rules, or `undefined` when the token lacks a variable it names (a
 * token bound to no pod, under a template naming {pod} or {podUid}).
 */
export function podSessionNameFor(template: SessionTemplate | undefined, identity: PodTokenIdentity): string | undefined {
  if (template === undefined) return podSessionName(identity);
  const rendered = renderTemplate(template, podWorkloadIdentity(identity));
  return 'value' in rendered ? fitSessionName(rendered.value) : undefined;
}
