import * as yaml from 'yaml';
import type * as ZodModule from 'zod';
import { z } from 'zod';
import { CrosscredError } from '../core/errors.js';

/**
 * What `serve` and `issuer` share to read a YAML or JSON config file: the read, the parse, the
 * schema check, and the one shape of CONFIG_INVALID (a heading, then one `field: problem` per line).
 *
 * yaml and zod are imported statically. They used to be loaded on first use through
 * `createRequire(import.meta.url)`, which kept them out of the memory of a daemon configured by
 * flags alone, but a bundler cannot see such a require, and the single-executable build
 * (packaging/) bundles every module into one file. loadConfig must stay synchronous (the CLI and
 * SIGHUP reload call it that way, and the issuer's config shares these helpers), so an `await
 * import()` is no substitute. The schemas are still built on first use (lazySchema).
 */
export type Zod = typeof ZodModule.z;

/** A schema built on first use and kept for every later parse. */
export function lazySchema<S extends ZodModule.ZodType>(build: (z: Zod) => S): () => S {
  let schema: S | undefined;
  return () => (schema ??= build(z));
}

export type ParsedConfigText<T> = { data: T } | { syntaxError: string } | { problems: string[] };

/** Parses YAML or JSON text and checks it against the schema: the data, the syntax error, or the problems. */
export function parseConfigText<S extends ZodModule.ZodType>(text: string, schema: () => S): ParsedConfigText<ZodModule.output<S>> {
  let data: unknown;
  try {
    // Aliases are bounded: a "billion laughs" file must not expand into gigabytes.
    data = yaml.parse(text, { maxAliasCount: 100 });
  } catch (err) {
    return { syntaxError: (err as Error).message.split('\n')[0] ?? 'unparseable' };
  }
  const result = schema().safeParse(data ?? {});
  if (!result.success) return { problems: schemaProblems(result.error) };
  return { data: result.data as ZodModule.output<S> };
}

/** One `field.path: message` line per schema issue, so that a person sees which key is wrong. */
export function schemaProblems(error: ZodModule.ZodError): string[] {
  return error.issues.map((i) => `${i.path.length ? i.path.join('.') : '(top level)'}: ${i.message}`);
}

/** CONFIG_INVALID (exit 78) listing every problem under a heading that says which configuration. */
export function configInvalid(heading: string, problems: readonly string[]): CrosscredError {
  return new CrosscredError('CONFIG_INVALID', `${heading}:\n  - ${problems.join('\n  - ')}`);
}

/** Reads a config file's text, or throws CONFIG_FILE_UNREADABLE worded by `describe` from the errno code. */
export function readConfigText(path: string, readText: (p: string) => string, describe: (code: string) => string): string {
  try {
    return readText(path);
  } catch (err) {
    throw new CrosscredError('CONFIG_FILE_UNREADABLE', describe((err as NodeJS.ErrnoException).code ?? 'error'));
  }
}
