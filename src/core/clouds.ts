/**
 * The clouds a role can live in: whose STS its token is traded at, and whose credentials (and
 * endpoints) it is served as. One list for the settings, the config file, the help text and the
 * credential port (exchange/credentials.ts holds its union to this list).
 */
export const CLOUDS = ['aws', 'alibaba', 'tencent'] as const;
export type CloudName = (typeof CLOUDS)[number];
