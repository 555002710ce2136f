/**
 * JSON Patch (RFC 6902) `add` operations and JSON Pointer (RFC 6901) paths. The webhook emits no
 * other operation: it never replaces an array that exists (the IRSA webhook's whole-array replace
 * dropped fields its compiled types did not know: its #208), and it creates an absent array whole,
 * since `add` under a missing parent fails.
 */

export interface AddOperation {
  readonly op: 'add';
  readonly path: string;
  readonly value: unknown;
}

/** RFC 6901: `~` is written `~0` and `/` is written `~1`, in that order. */
export function escapePointerSegment(segment: string): string {
  return segment.replaceAll('~', '~0').replaceAll('/', '~1');
}

/** A pointer from its segments, each escaped: `pointer('metadata', 'annotations', 'crosscred.io/injected')`. */
export function pointer(...segments: ReadonlyArray<string | number>): string {
  return segments.map((s) => `/${escapePointerSegment(String(s))}`).join('');
}

export function add(path: string, value: unknown): AddOperation {
  return { op: 'add', path, value };
}

/**
 * Appends `items` to the array at `path`: one `add …/-` per item when the array exists, else one
 * `add` of the whole new array.
 */
export function appendAll(path: string, exists: boolean, items: readonly unknown[]): AddOperation[] {
  if (items.length === 0) return [];
  return exists ? items.map((item) => add(`${path}/-`, item)) : [add(path, [...items])];
}

/**
 * The document after `operations`, applied to a copy: what the next part of a patch is planned
 * against, since JSON Patch applies its operations in order (an array one operation creates is
 * appended to by the next, an index shifts after an insert). Only this module's own operations are
 * applied, so a pointer that does not resolve is a bug, thrown.
 */
export function applied<T>(document: T, operations: readonly AddOperation[]): T {
  const copy = structuredClone(document);
  for (const { path, value } of operations) {
    const segments = path
      .split('/')
      .slice(1)
      .map((s) => s.replaceAll('~1', '/').replaceAll('~0', '~'));
    const last = segments.pop();
    let parent: unknown = copy;
    for (const segment of segments) parent = (parent as Record<string, unknown>)[segment];
    if (parent === null || typeof parent !== 'object' || last === undefined) throw new Error(`JSON Patch: ${path} has no parent`);
    const item = structuredClone(value);
    if (Array.isArray(parent)) {
      const index = last === '-' ? parent.length : Number(last);
      if (!Number.isInteger(index) || index < 0 || index > parent.length) throw new Error(`JSON Patch: ${path} is out of range`);
      parent.splice(index, 0, item);
    } else (parent as Record<string, unknown>)[last] = item;
  }
  return copy;
}
