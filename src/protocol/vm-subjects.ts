/**
 * The `sub` formats of the tokens `crosscred issuer` mints for VMs. Two products speak them: the
 * issuer writes them (src/issuer/policy.ts) and `trust-policy` writes IAM patterns that match them
 * (src/advice/trust-policy.ts). They are stable: IAM trust policies match on them.
 *
 * - Alibaba ECS instance identity: `alibaba-ecs:<owner-account-id>:<region-id>:<instance-id>`
 * - Alibaba RAM role:              `alibaba-ram:<account-id>:role/<role-name>`
 * - Tencent CAM role:              `tencent-cam:<uin>:role/<role-id>`
 */

/** The three kinds, by the prefix each `sub` starts with. */
export const VM_SUBJECT_KINDS = ['alibaba-ecs', 'alibaba-ram', 'tencent-cam'] as const;
export type VmSubjectKind = (typeof VM_SUBJECT_KINDS)[number];

/** The parts of one `sub`. In an IAM pattern a part may be `*`. */
export type VmSubject =
  | { readonly kind: 'alibaba-ecs'; readonly account: string; readonly region: string; readonly instanceId: string }
  | { readonly kind: 'alibaba-ram' | 'tencent-cam'; readonly account: string; readonly role: string };

export function formatVmSubject(subject: VmSubject): string {
  return subject.kind === 'alibaba-ecs'
    ? `alibaba-ecs:${subject.account}:${subject.region}:${subject.instanceId}`
    : `${subject.kind}:${subject.account}:role/${subject.role}`;
}

/** The kind a `sub` value or pattern belongs to, from its prefix. */
export function vmSubjectKindOf(subject: string): VmSubjectKind | undefined {
  return VM_SUBJECT_KINDS.find((k) => subject.startsWith(`${k}:`));
}
