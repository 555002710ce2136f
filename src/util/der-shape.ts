/**
 * A cheap look at untrusted ASN.1 before a full parser (asn1js, pkijs) builds objects from it: the
 * bytes must be one DER element, nested at most `maxDepth` deep and made of at most `maxNodes`
 * elements. The walk allocates nothing and visits each header once, so refusing a hostile
 * message costs microseconds, where asn1js spends about 3.6 µs on each element it builds
 * (a 24 KiB run of NULLs: 44 ms).
 *
 * Parsers also look inside primitive OCTET STRINGs and BIT STRINGs (asn1js tries each as embedded
 * ASN.1; pkijs re-parses extension values, public keys and ECDSA signatures without limits). So
 * the walk looks there too, leniently (BER, as those parsers do): what it finds counts against the
 * same limits, and bytes that are not ASN.1 are simply data. Everything the parsers may build is
 * thus bounded by the limits, whatever the message holds.
 */

export interface DerLimits {
  /** Elements in all, those found inside OCTET and BIT STRINGs included. */
  readonly maxNodes: number;
  /** Nesting depth; the outermost element is at depth 1. */
  readonly maxDepth: number;
}

/** Why the bytes were refused: stable words, for messages and tests. */
export type DerRefusal = 'indefinite-length' | 'not-der' | 'too-deep' | 'too-many-nodes';

export class DerShapeError extends Error {
  constructor(
    readonly reason: DerRefusal,
    message: string,
  ) {
    super(message);
    this.name = 'DerShapeError';
  }
}

/** What was found: the number of elements and the deepest nesting. */
export interface DerShape {
  readonly nodes: number;
  readonly depth: number;
}

interface Header {
  readonly tagClass: number;
  readonly constructed: boolean;
  readonly tagNumber: number;
  /** Where the contents start. */
  readonly contentStart: number;
  /** The contents' length, or -1 for the indefinite form (BER only). */
  readonly length: number;
  /** False for a high tag number, or a length in more bytes than needed (both legal BER, never DER here). */
  readonly minimal: boolean;
}

const UNIVERSAL = 0;
const TAG_BIT_STRING = 3;
const TAG_OCTET_STRING = 4;
/** More length bytes than this describe more bytes than any message has. */
const MAX_LENGTH_BYTES = 4;

/** Checks that `bytes` is exactly one DER element within `limits`; throws a DerShapeError if not. */
export function checkDerShape(bytes: Uint8Array, limits: DerLimits): DerShape {
  const walk = new DerWalk(bytes, limits);
  const end = walk.strict(0, bytes.length, 1);
  if (end !== bytes.length) throw new DerShapeError('not-der', `${bytes.length - end} bytes follow the DER element`);
  return { nodes: walk.nodes, depth: walk.deepest };
}

/** Reads one header at `at`, or returns undefined when the bytes before `end` are not one. */
function readHeader(bytes: Uint8Array, at: number, end: number): Header | undefined {
  if (at + 2 > end) return undefined;
  const first = bytes[at]!;
  let offset = at + 1;
  let tagNumber = first & 0x1f;
  let minimal = true;
  if (tagNumber === 0x1f) {
    // High tag number form: base-128 digits. CMS never needs it; it is read to be skipped over.
    minimal = false;
    tagNumber = 0;
    for (let digits = 0; ; digits++) {
      if (offset >= end || digits === 4) return undefined;
      const digit = bytes[offset++]!;
      tagNumber = tagNumber * 128 + (digit & 0x7f);
      if ((digit & 0x80) === 0) break;
    }
  }
  if (offset >= end) return undefined;
  const lengthByte = bytes[offset++]!;
  let length = lengthByte;
  if (lengthByte === 0x80) length = -1;
  else if (lengthByte > 0x80) {
    const count = lengthByte & 0x7f;
    if (count > MAX_LENGTH_BYTES || offset + count > end) return undefined;
    length = 0;
    for (let i = 0; i < count; i++) length = length * 256 + bytes[offset++]!;
    // DER: the long form only for 128 and more, in as few bytes as the value needs.
    if (length < 0x80 || bytes[offset - count] === 0) minimal = false;
  }
  return { tagClass: first >> 6, constructed: (first & 0x20) !== 0, tagNumber, contentStart: offset, length, minimal };
}

/** A string type whose embedded ASN.1 parsers try to read: OCTET STRING, or BIT STRING without unused bits. */
function embeddedStart(bytes: Uint8Array, header: Header, end: number): number | undefined {
  if (header.tagClass !== UNIVERSAL || header.constructed) return undefined;
  if (header.tagNumber === TAG_OCTET_STRING) return header.contentStart;
  if (header.tagNumber === TAG_BIT_STRING && header.contentStart < end && bytes[header.contentStart] === 0) return header.contentStart + 1;
  return undefined;
}

class DerWalk {
  nodes = 0;
  deepest = 0;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly limits: DerLimits,
  ) {}

  #count(depth: number): void {
    this.nodes++;
    if (depth > this.deepest) this.deepest = depth;
    if (this.nodes > this.limits.maxNodes) throw new DerShapeError('too-many-nodes', `more than ${this.limits.maxNodes} ASN.1 elements`);
    if (depth > this.limits.maxDepth) throw new DerShapeError('too-deep', `ASN.1 nested more than ${this.limits.maxDepth} deep`);
  }

  /** One DER element at `at` (before `end`), at `depth`; returns where it ends. */
  strict(at: number, end: number, depth: number): number {
    this.#count(depth);
    const header = readHeader(this.bytes, at, end);
    if (header === undefined) throw new DerShapeError('not-der', 'an ASN.1 header is cut short or malformed');
    if (header.length === -1) throw new DerShapeError('indefinite-length', 'an indefinite length (BER, not DER)');
    if (!header.minimal) throw new DerShapeError('not-der', 'a length or tag not in its shortest form (BER, not DER)');
    const contentEnd = header.contentStart + header.length;
    if (contentEnd > end) throw new DerShapeError('not-der', 'an ASN.1 length runs past its enclosing element');
    if (header.constructed) {
      // DER encodes strings primitive; a constructed OCTET or BIT STRING is BER.
      if (header.tagClass === UNIVERSAL && (header.tagNumber === TAG_OCTET_STRING || header.tagNumber === TAG_BIT_STRING)) {
        throw new DerShapeError('not-der', 'a constructed string (BER, not DER)');
      }
      for (let child = header.contentStart; child < contentEnd; ) child = this.strict(child, contentEnd, depth + 1);
      return contentEnd;
    }
    const embedded = embeddedStart(this.bytes, header, contentEnd);
    if (embedded !== undefined && embedded < contentEnd) this.lenient(embedded, contentEnd, depth + 1);
    return contentEnd;
  }

  /**
   * What a BER parser would build from the bytes at `at`: counted against the limits (which throw),
   * but bytes that are not ASN.1 only end the walk. Returns where the element ends, or undefined.
   */
  lenient(at: number, end: number, depth: number): number | undefined {
    this.#count(depth);
    const header = readHeader(this.bytes, at, end);
    if (header === undefined) return undefined;
    if (header.length === -1) {
      if (!header.constructed) return undefined;
      // Children up to the end-of-contents octets 00 00.
      for (let child = header.contentStart; child + 1 < end; ) {
        if (this.bytes[child] === 0 && this.bytes[child + 1] === 0) return child + 2;
        const next = this.lenient(child, end, depth + 1);
        if (next === undefined) return undefined;
        child = next;
      }
      return undefined;
    }
    const contentEnd = header.contentStart + header.length;
    if (contentEnd > end) return undefined;
    if (header.constructed) {
      for (let child = header.contentStart; child < contentEnd; ) {
        const next = this.lenient(child, contentEnd, depth + 1);
        if (next === undefined) return undefined;
        child = next;
      }
      return contentEnd;
    }
    const embedded = embeddedStart(this.bytes, header, contentEnd);
    if (embedded !== undefined && embedded < contentEnd) this.lenient(embedded, contentEnd, depth + 1);
    return contentEnd;
  }
}
