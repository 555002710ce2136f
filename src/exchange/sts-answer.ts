/**
 * The checks every cloud's STS answer goes through, whichever exchange read it: its Date header,
 * its JSON, and whether the credentials it carries are already expired, by STS's own clock or by
 * this host's. One copy, so the three exchanges judge the same answer the same way.
 */

/** An HTTP Date header (IMF-fixdate, RFC 9110 §5.6.7) as epoch ms; undefined when absent or malformed. */
const IMF_FIXDATE = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

export function parseHttpDate(value: string | undefined): number | undefined {
  if (value === undefined || !IMF_FIXDATE.test(value)) return undefined;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : undefined;
}

/** The body as a JSON object, or undefined when it is not one (an array, a scalar, not JSON at all). */
export function jsonObject(body: Buffer): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(body.toString('utf8'));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Why credentials expiring at `expirationWall` must not be taken, or undefined: already expired by
 * STS's own clock (its Date header, when it sent one), or by this host's clock while valid by STS's,
 * which means this host's clock is ahead. Worded to follow "STS answered … credentials".
 */
export function alreadyExpired(expirationWall: number, stsDateWall: number | undefined, nowWall: number): string | undefined {
  if (stsDateWall !== undefined && expirationWall <= stsDateWall) return 'that are already expired by its own clock';
  if (expirationWall > nowWall) return undefined;
  const skew = stsDateWall === undefined ? '' : ` (this host's clock is ${Math.round((nowWall - stsDateWall) / 1000)} s ahead of STS's)`;
  return `that are already expired by this host's clock${skew}; check the host clock (NTP)`;
}
