import { createHash } from 'node:crypto';

/**
 * A fixed-size name for a caller's key (43 characters): memory per entry does not depend on what an
 * attestor uses as its key, and the store (Redis included) never holds attestation bytes.
 */
export function digestKey(value: string): string {
  return createHash('sha256').update(value).digest('base64url');
}
