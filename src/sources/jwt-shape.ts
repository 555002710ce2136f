/**
 * The JWT shape checks moved to protocol/jwt-shape.ts, where the node agent (which may not import
 * sources/) reads them too; the token sources keep importing them from here.
 */
export { inspectJwt, STS_MAX_TOKEN_LENGTH } from '../protocol/jwt-shape.js';
