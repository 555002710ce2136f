import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorFormat } from './responses.js';

/** Longest role name IAM allows is 64 characters; a longer path segment is answered 414 unread. */
export const MAX_PARAM_LENGTH = 128;

/** A route's handler; `param` is the decoded last segment of a `:role` route, else ''. */
export type RouteHandler = (req: IncomingMessage, res: ServerResponse, param: string) => void | Promise<void>;

export interface Route {
  /** The path as registered (`…/:role` for a parameter route): the metrics label, never a client path. */
  readonly template: string;
  readonly format: ErrorFormat;
  readonly get?: RouteHandler;
  readonly put?: RouteHandler;
  /** The `Allow` header for a 405 (GET routes also answer HEAD). */
  readonly allow: string;
}

export type RouteMatch =
  | { readonly kind: 'route'; readonly route: Route; readonly param: string }
  | { readonly kind: 'not-found' }
  /** The parameter segment is longer than MAX_PARAM_LENGTH. */
  | { readonly kind: 'too-long'; readonly route: Route }
  /** The parameter segment has a malformed percent-escape. */
  | { readonly kind: 'malformed'; readonly route: Route };

const NOT_FOUND: RouteMatch = { kind: 'not-found' };

/**
 * The credential listener's router: a map of exact paths plus a few `prefix/:role` routes.
 *
 * Matching rules, documented in docs/endpoints.md (How requests are matched) and relied on by the fuzz tests:
 * - the query string is ignored; the path is compared byte for byte (case-sensitive, no
 *   normalisation of `//`, `.`, `..` or a trailing slash: only the paths listed are served);
 * - only a `:role` segment is percent-decoded, after the prefix matched; a decoded segment that
 *   names no role (`..`, `app/..`) simply finds no role.
 */
export class RouteTable {
  readonly #exact = new Map<string, Route>();
  readonly #parameterised: Array<{ readonly prefix: string; readonly route: Route }> = [];

  add(template: string, format: ErrorFormat, methods: { get?: RouteHandler; put?: RouteHandler }): void {
    const allow = [methods.get ? 'GET, HEAD' : '', methods.put ? 'PUT' : ''].filter(Boolean).join(', ');
    const route: Route = { template, format, allow, ...methods };
    if (template.endsWith('/:role')) this.#parameterised.push({ prefix: template.slice(0, -':role'.length), route });
    else this.#exact.set(template, route);
  }

  match(path: string): RouteMatch {
    const exact = this.#exact.get(path);
    if (exact !== undefined) return { kind: 'route', route: exact, param: '' };
    for (const { prefix, route } of this.#parameterised) {
      if (!path.startsWith(prefix)) continue;
      const segment = path.slice(prefix.length);
      if (segment.includes('/')) return NOT_FOUND;
      if (segment.length > MAX_PARAM_LENGTH) return { kind: 'too-long', route };
      if (!segment.includes('%')) return { kind: 'route', route, param: segment };
      try {
        return { kind: 'route', route, param: decodeURIComponent(segment) };
      } catch {
        return { kind: 'malformed', route };
      }
    }
    return NOT_FOUND;
  }
}

/** The path part of a request target, without the query string. */
export function pathOf(url: string | undefined): string {
  if (url === undefined) return '/';
  const q = url.indexOf('?');
  return q < 0 ? url : url.slice(0, q);
}
