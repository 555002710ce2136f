/**
 * Hostile ASN.1 for the PKCS#7 checks (issue 11, item 2): each one a ContentInfo-looking message
 * built to make a BER parser work hard, small enough to pass a size cap.
 */

/** A DER length: short form under 128, else the fewest bytes. */
function derLength(length: number): Buffer {
  if (length < 0x80) return Buffer.from([length]);
  const bytes: number[] = [];
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

export function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

/** OID 1.2.840.113549.1.7.2 (signedData). */
const SIGNED_DATA_OID = Buffer.from('06092a864886f70d010702', 'hex');
const NULL = Buffer.from([0x05, 0x00]);

/** ContentInfo { signedData, [0] EXPLICIT content }. */
function contentInfo(content: Buffer): Buffer {
  return tlv(0x30, SIGNED_DATA_OID, tlv(0xa0, content));
}

/** `count` NULLs in one SEQUENCE: 2 bytes per element (the 24 KiB run is count 12,288). */
export function manyNulls(count: number): Buffer {
  return contentInfo(tlv(0x30, ...new Array<Buffer>(count).fill(NULL)));
}

/** The same NULLs inside a primitive OCTET STRING, where parsers look for embedded ASN.1. */
export function nullsInOctetString(count: number): Buffer {
  return contentInfo(tlv(0x30, tlv(0x04, tlv(0x30, ...new Array<Buffer>(count).fill(NULL)))));
}

/** SEQUENCEs nested `depth` deep around a NULL. */
export function deepNesting(depth: number): Buffer {
  let inner: Buffer = NULL;
  for (let i = 0; i < depth; i++) inner = tlv(0x30, inner);
  return contentInfo(inner);
}

/** A SEQUENCE of NULLs in the indefinite-length form (BER), closed by 00 00. */
export function indefiniteLength(count: number): Buffer {
  const inner = Buffer.concat([Buffer.from([0x30, 0x80]), ...new Array<Buffer>(count).fill(NULL), Buffer.from([0x00, 0x00])]);
  return contentInfo(inner);
}

/** A NULL whose length is written in the long form (0x81 0x00): BER, never DER. */
export function nonMinimalLength(): Buffer {
  return contentInfo(tlv(0x30, Buffer.from([0x05, 0x81, 0x00])));
}
