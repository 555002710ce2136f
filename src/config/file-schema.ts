import type * as ZodModule from 'zod';
import { CLOUDS } from '../core/clouds.js';
import { LOG_LEVELS } from './config.js';
import { lazySchema, type ParsedConfigText, parseConfigText, type Zod } from './config-file.js';
import { SOURCE_KINDS } from './detect-token-source.js';

/** The schema of `crosscred serve`'s config file. zod builds it on first use (see config-file.ts). */
function buildSchema(z: Zod) {
  const tokenCommandSchema = z.array(z.string().min(1)).min(1);
  // A session policy is JSON text, or the same document written as YAML (sent compact).
  const policySchema = z.union([z.string(), z.record(z.string(), z.unknown())]);

  const hopSchema = z.strictObject({
    roleArn: z.string(),
    externalId: z.string().optional(),
    sessionName: z.string().optional(),
    durationSeconds: z.number().optional(),
    policy: policySchema.optional(),
    policyArns: z.array(z.string()).optional(),
    tags: z.record(z.string(), z.string()).optional(),
    transitiveTagKeys: z.array(z.string()).optional(),
  });

  const fileRoleSchema = z.strictObject({
    cloud: z.enum(CLOUDS).optional(),
    name: z.string().optional(),
    roleArn: z.string(),
    oidcProviderArn: z.string().optional(),
    providerId: z.string().optional(),
    vpcEndpoint: z.boolean().optional(),
    tokenSource: z.enum(SOURCE_KINDS).optional(),
    tokenFile: z.string().optional(),
    tokenCommand: tokenCommandSchema.optional(),
    tokenAudience: z.string().optional(),
    sessionName: z.string().optional(),
    durationSeconds: z.number().optional(),
    region: z.string().optional(),
    stsEndpoint: z.string().optional(),
    // ROLE_SESSION_KEYS: structured, so not settings of the table (config/resolve-session.ts reads them).
    policy: policySchema.optional(),
    policyArns: z.array(z.string()).optional(),
    chain: z.array(hopSchema).min(1).optional(),
  });

  const fileSchema = z.strictObject({
    cloud: z.enum(CLOUDS).optional(),
    oidcProviderArn: z.string().optional(),
    providerId: z.string().optional(),
    vpcEndpoint: z.boolean().optional(),
    roles: z.array(fileRoleSchema).min(1).optional(),
    tokenSource: z.enum(SOURCE_KINDS).optional(),
    tokenFile: z.string().optional(),
    tokenCommand: tokenCommandSchema.optional(),
    tokenCommandTimeoutMs: z.number().optional(),
    tokenCommandEnv: z.array(z.string()).optional(),
    tokenAudience: z.string().optional(),
    tokenExpirationSeconds: z.number().optional(),
    kubernetesServiceAccountDir: z.string().optional(),
    issuerUrl: z.string().optional(),
    issuerCaBundle: z.string().optional(),
    issuerTokenEndpoint: z.string().optional(),
    instanceSecretFile: z.string().optional(),
    alibabaAttestation: z.string().optional(),
    cloudStsEndpoint: z.string().optional(),
    awsOutboundSigningAlgorithm: z.string().optional(),
    awsOutboundDurationSeconds: z.number().optional(),
    awsOutboundRegion: z.string().optional(),
    awsOutboundStsEndpoint: z.string().optional(),
    sessionName: z.string().optional(),
    durationSeconds: z.number().optional(),
    region: z.string().optional(),
    stsEndpoint: z.string().optional(),
    caBundle: z.string().optional(),
    stsConnectTimeoutMs: z.number().optional(),
    stsTimeoutMs: z.number().optional(),
    listen: z
      .array(z.union([z.string(), z.strictObject({ address: z.string(), role: z.string().optional() })]))
      .min(1)
      .optional(),
    adminListen: z.string().optional(),
    authTokenFile: z.string().optional(),
    allowImdsV1: z.boolean().optional(),
    disableImds: z.boolean().optional(),
    allowRemote: z.boolean().optional(),
    allowedHosts: z.array(z.string()).optional(),
    logLevel: z.enum(LOG_LEVELS).optional(),
  });
  return fileSchema;
}

export type FileConfig = ZodModule.z.infer<ReturnType<typeof buildSchema>>;

/**
 * The keys of a role of the file that are documents rather than settings: a session policy, its
 * managed policies and the role chain (#18). They exist only in the file, on a role of `roles`, and
 * are read by config/resolve-session.ts, not through the settings table.
 */
export const ROLE_SESSION_KEYS = ['policy', 'policyArns', 'chain'] as const;

/** The schema, built on first call; exported so that a test can hold its keys against the settings table. */
export const serveFileSchema = lazySchema(buildSchema);

/** Parses a YAML or JSON config file's text: the config, or what is wrong with it. */
export function parseConfigFileText(text: string): ParsedConfigText<FileConfig> {
  return parseConfigText(text, serveFileSchema);
}
