import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { podSchema } from '../../src/platform/kubernetes/admission-review.js';
import type { InjectionSettings } from '../../src/webhook/injection-settings.js';
import { alreadyInjected, planPodPatch } from '../../src/webhook/pod-patch.js';
import { applyAndValidate, barePod, changedOriginals, type Json, type PatchOp } from '../support/admission-pods.js';

/**
 * The patch builder on golden pods (the exact patch, reviewed as data) and on generated ones:
 * whatever arrays and annotation keys a pod has, the patch applies, keeps every original field,
 * validates as a Pod, and a second pass adds nothing.
 */

const ROLE = 'arn:aws:iam::111122223333:role/app';
const settings: InjectionSettings = { roleArn: ROLE, audience: 'sts.amazonaws.com', expirationSeconds: 86400, mode: 'agent' };

function plan(pod: Json, s: InjectionSettings = settings, options: Parameters<typeof planPodPatch>[2] = { ipFamily: 'ipv4' }) {
  return planPodPatch(podSchema.parse(pod), s, options);
}

describe('golden patches', () => {
  it('agent mode on a bare pod', () => {
    const decision = plan(barePod());
    expect(decision).toEqual({
      kind: 'patch',
      warnings: [],
      operations: [
        {
          op: 'add',
          path: '/spec/containers/0/volumeMounts',
          value: [{ name: 'crosscred-token', mountPath: '/var/run/secrets/crosscred.io/serviceaccount', readOnly: true }],
        },
        {
          op: 'add',
          path: '/spec/containers/0/env',
          value: [
            { name: 'AWS_CONTAINER_CREDENTIALS_FULL_URI', value: 'http://169.254.170.23/v1/credentials/arn:aws:iam::111122223333:role/app' },
            { name: 'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE', value: '/var/run/secrets/crosscred.io/serviceaccount/token' },
          ],
        },
        {
          op: 'add',
          path: '/spec/volumes',
          value: [
            {
              name: 'crosscred-token',
              projected: { sources: [{ serviceAccountToken: { audience: 'sts.amazonaws.com', expirationSeconds: 86400, path: 'token' } }] },
            },
          ],
        },
        { op: 'add', path: '/metadata/annotations', value: { 'crosscred.io/injected': 'agent' } },
      ],
    });
  });

  it('web-identity mode on a pod with env, mounts, volumes and annotations: appends only', () => {
    const pod = barePod();
    (pod['metadata'] as Json)['annotations'] = { team: 'a' };
    const spec = pod['spec'] as Json;
    spec['volumes'] = [{ name: 'data', emptyDir: {} }];
    (spec['containers'] as Json[])[0] = {
      name: 'main',
      image: 'busybox',
      env: [{ name: 'A', value: '1' }],
      volumeMounts: [{ name: 'data', mountPath: '/data' }],
    };
    const decision = plan(pod, { ...settings, mode: 'web-identity' });
    expect(decision.kind === 'patch' && decision.operations).toEqual([
      {
        op: 'add',
        path: '/spec/containers/0/volumeMounts/-',
        value: { name: 'crosscred-token', mountPath: '/var/run/secrets/crosscred.io/serviceaccount', readOnly: true },
      },
      { op: 'add', path: '/spec/containers/0/env/-', value: { name: 'AWS_ROLE_ARN', value: ROLE } },
      {
        op: 'add',
        path: '/spec/containers/0/env/-',
        value: { name: 'AWS_WEB_IDENTITY_TOKEN_FILE', value: '/var/run/secrets/crosscred.io/serviceaccount/token' },
      },
      {
        op: 'add',
        path: '/spec/containers/0/env/-',
        value: { name: 'AWS_ROLE_SESSION_NAME', valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath: 'metadata.name' } } },
      },
      {
        op: 'add',
        path: '/spec/volumes/-',
        value: {
          name: 'crosscred-token',
          projected: { sources: [{ serviceAccountToken: { audience: 'sts.amazonaws.com', expirationSeconds: 86400, path: 'token' } }] },
        },
      },
      { op: 'add', path: '/metadata/annotations/crosscred.io~1injected', value: 'web-identity' },
    ]);
  });

  it('sidecar mode without --sidecar-image is denied with the flag named', () => {
    expect(plan(barePod(), { ...settings, mode: 'sidecar' })).toMatchObject({ kind: 'deny', message: expect.stringContaining('--sidecar-image') });
  });
});

const containerName = fc.constantFrom('app', 'sidecar', 'init-db', 'proxy', 'worker');
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
const keyText = fc.string({ unit: fc.constantFrom('a', 'b', '~', '/', '.', '-', '0', '1'), minLength: 1, maxLength: 12 });
const containerArb = (name: string) =>
  fc
    .record({
      env: maybe(
        fc.array(fc.record({ name: fc.constantFrom('LOG_LEVEL', 'PORT', 'AWS_REGION', 'HOME'), value: fc.string({ maxLength: 8 }) }), { maxLength: 3 }),
      ),
      volumeMounts: maybe(fc.array(fc.record({ name: fc.constant('data'), mountPath: fc.constantFrom('/data', '/tmp', '/var/lib/x') }), { maxLength: 2 })),
      restartPolicy: maybe(fc.constant('Always')),
      runAsUser: maybe(fc.constantFrom(1000, 2000)),
    })
    .map((c) => {
      const out: Json = { name, image: 'registry.example.com/x:1' };
      if (c.env) out['env'] = c.env;
      if (c.volumeMounts) out['volumeMounts'] = c.volumeMounts;
      if (c.runAsUser !== undefined) out['securityContext'] = { runAsUser: c.runAsUser };
      return { out, native: c.restartPolicy };
    });

const podArb = fc
  .record({
    containers: fc.uniqueArray(containerName, { minLength: 1, maxLength: 3 }).chain((names) => fc.tuple(...names.map(containerArb))),
    inits: fc.uniqueArray(fc.constantFrom('migrate', 'shipper'), { maxLength: 2 }).chain((names) => fc.tuple(...names.map(containerArb))),
    hasInits: fc.boolean(),
    volumes: fc.boolean(),
    annotations: maybe(fc.dictionary(keyText, fc.string({ maxLength: 6 }), { maxKeys: 3 })),
    mode: fc.constantFrom('agent', 'web-identity', 'sidecar') as fc.Arbitrary<InjectionSettings['mode']>,
    ipFamily: fc.constantFrom('ipv4', 'ipv6') as fc.Arbitrary<'ipv4' | 'ipv6'>,
    region: maybe(fc.constant('eu-west-1')),
  })
  .map((g) => {
    const spec: Json = { containers: g.containers.map((c) => c.out) };
    if (g.hasInits) spec['initContainers'] = g.inits.map((c) => (c.native ? { ...c.out, restartPolicy: 'Always' } : c.out));
    if (g.volumes) spec['volumes'] = [{ name: 'data', emptyDir: {} }];
    const metadata: Json = { name: 'p', namespace: 'ns' };
    if (g.annotations) metadata['annotations'] = g.annotations;
    return { pod: { apiVersion: 'v1', kind: 'Pod', metadata, spec } as Json, mode: g.mode, ipFamily: g.ipFamily, region: g.region };
  });

describe('generated pods', () => {
  it('every patch is adds only, applies, keeps what was there, validates, and marks the pod injected', () => {
    let patched = 0;
    fc.assert(
      fc.property(podArb, ({ pod, mode, ipFamily, region }) => {
        const options = { ipFamily, sidecarImage: 'crosscred:1', ...(region ? { region } : {}) };
        const decision = plan(pod, { ...settings, mode }, options);
        if (decision.kind !== 'patch') return;
        patched++;
        const ops = decision.operations as PatchOp[];
        expect(ops.every((o) => o.op === 'add')).toBe(true);
        const after = applyAndValidate(pod, ops);
        const comparable = structuredClone(after);
        if (mode === 'sidecar') ((comparable['spec'] as Json)['initContainers'] as Json[]).shift();
        expect(changedOriginals(pod, comparable)).toEqual([]);
        for (const [k, v] of Object.entries(((pod['metadata'] as Json)['annotations'] as Json | undefined) ?? {}))
          expect(((after['metadata'] as Json)['annotations'] as Json)[k]).toBe(v);
        // What admit() checks first on a reinvocation (the whole path is in webhook-admission.test.ts).
        expect(alreadyInjected(podSchema.parse(after))).toBe('annotation');
      }),
      { numRuns: 300 },
    );
    // The generator makes pods the builder patches, not only ones it refuses.
    expect(patched).toBeGreaterThan(200);
  });
});
