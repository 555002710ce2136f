import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type CachedCredentials, ofCloud } from '../cache/role-credential-cache.js';
import type { RoleConfig } from '../config/config.js';
import { send, sendError, TEXT_PLAIN } from '../http/responses.js';
import type { RouteTable } from '../http/route-table.js';
import { awsTimestamp, documentsFor } from '../platform/aws/credential-documents.js';
import { answerFromCache, type ListenerContext, type ServedRole } from './listener-context.js';
import { addMetadataTokens, type MetadataTokenDialect } from './metadata-tokens.js';

const CREDENTIALS_LIST = '/latest/meta-data/iam/security-credentials';
const CREDENTIALS_EXTENDED_LIST = '/latest/meta-data/iam/security-credentials-extended';

/** IMDSv2's handshake; the Go SDK requires the TTL echoed back to cache the token. */
const IMDS_TOKENS: MetadataTokenDialect = {
  ttlHeader: 'X-aws-ec2-metadata-token-ttl-seconds',
  tokenHeader: 'X-aws-ec2-metadata-token',
  ttlInvalid: 'IMDS_TTL_INVALID',
  tokenRequired: 'IMDS_TOKEN_REQUIRED',
  tokenWords: 'IMDSv2 session token',
  echoTtl: true,
};

/**
 * The EC2 instance metadata service, as much of it as credential and region lookups use, byte for
 * byte what the AWS SDKs and CLI expect (docs/client-compatibility.md). IMDSv2 by default: every GET
 * needs a session token from `PUT /latest/api/token`; `--allow-imdsv1` also accepts token-less GETs.
 */
export function addImdsRoutes(table: RouteTable, ctx: ListenerContext): void {
  const roleName = ctx.roleName;
  const startedAt = Date.now();
  /** This listener's role as now configured (a reload may have replaced it; it is never removed). */
  const currentRole = (): ServedRole => ctx.roles.get(roleName)!;

  /** The IMDSv2 gate: true when the request may read metadata; otherwise it has been answered 401. */
  const authorized = addMetadataTokens(table, ctx, IMDS_TOKENS);

  const roleList = Buffer.from(roleName);
  const listRoles = (req: IncomingMessage, res: ServerResponse) => {
    if (authorized(req, res)) send(res, 200, TEXT_PLAIN, roleList);
  };

  // Rendered from the cached entry's documents, made once per set of credentials.
  const renderImds = (entry: CachedCredentials) => (ofCloud(entry, 'aws') ? documentsFor(entry).imds : undefined);
  const renderImdsExtended = (entry: CachedCredentials) => (ofCloud(entry, 'aws') ? documentsFor(entry).imdsExtended : undefined);
  const serveCredentials = (extended: boolean) => (req: IncomingMessage, res: ServerResponse, name: string) => {
    if (!authorized(req, res)) return;
    if (name !== roleName) return sendError(res, 'NOT_FOUND', 'no such role on this listener', 'text');
    return answerFromCache(res, currentRole(), TEXT_PLAIN, 'text', extended ? renderImdsExtended : renderImds);
  };

  for (const [base, extended] of [
    [CREDENTIALS_LIST, false],
    [CREDENTIALS_EXTENDED_LIST, true],
  ] as const) {
    table.add(base, 'text', { get: listRoles });
    table.add(`${base}/`, 'text', { get: listRoles });
    table.add(`${base}/:role`, 'text', { get: serveCredentials(extended) });
  }

  const fixed: Array<[string, (role: ServedRole) => Buffer]> = [
    ['/latest/meta-data/placement/region', (role) => fixedDocumentsFor(role.config).region],
    ['/latest/dynamic/instance-identity/document', (role) => fixedDocumentsFor(role.config).identity],
    ['/latest/meta-data/iam/info', (role) => infoDocument(role.config, role.cache.current()?.receivedAtWall ?? startedAt)],
  ];
  for (const [path, body] of fixed) {
    table.add(path, 'text', {
      get: (req, res) => {
        if (authorized(req, res)) send(res, 200, TEXT_PLAIN, body(currentRole()));
      },
    });
  }
}

/** The documents that depend only on a role's configuration, rendered once per configuration. */
interface FixedDocuments {
  readonly region: Buffer;
  readonly identity: Buffer;
  readonly instanceProfileArn: string;
  readonly instanceProfileId: string;
}

const fixedDocuments = new WeakMap<RoleConfig, FixedDocuments>();

function fixedDocumentsFor(config: RoleConfig): FixedDocuments {
  let docs = fixedDocuments.get(config);
  if (docs === undefined) {
    docs = {
      region: Buffer.from(config.region),
      identity: Buffer.from(JSON.stringify({ accountId: config.accountId, region: config.region }, null, 2)),
      // There is no instance profile; these name the role crosscred assumes, in the shape SDKs parse.
      instanceProfileArn: `arn:aws:iam::${config.accountId}:instance-profile/${config.name}`,
      instanceProfileId: syntheticProfileId(config.roleArn),
    };
    fixedDocuments.set(config, docs);
  }
  return docs;
}

function infoDocument(config: RoleConfig, lastUpdatedMs: number): Buffer {
  const fixed = fixedDocumentsFor(config);
  const info = {
    Code: 'Success',
    LastUpdated: awsTimestamp(lastUpdatedMs),
    InstanceProfileArn: fixed.instanceProfileArn,
    InstanceProfileId: fixed.instanceProfileId,
  };
  return Buffer.from(JSON.stringify(info, null, 2));
}

/** A stable, instance-profile-shaped id (AIPA + 17 characters) derived from the role ARN. */
function syntheticProfileId(roleArn: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  const digest = createHash('sha256').update(roleArn).digest();
  let id = 'AIPA';
  for (let i = 0; i < 17; i++) id += alphabet[digest[i]! % 32];
  return id;
}
