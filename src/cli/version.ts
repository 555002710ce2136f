import { readFileSync } from 'node:fs';

/**
 * Set at bundle time by packaging/bundle.mjs (esbuild `define`): the single executable carries no
 * package.json to read. Undeclared, and so `typeof … === 'undefined'`, when run from dist/.
 */
declare const CROSSCRED_BUILD_VERSION: string;

/** crosscred's version: the constant the bundle was built with, or package.json's beside dist/. */
export function crosscredVersion(): string {
  if (typeof CROSSCRED_BUILD_VERSION === 'string') return CROSSCRED_BUILD_VERSION;
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
