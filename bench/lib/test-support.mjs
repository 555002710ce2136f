// The benchmark's stand-ins for the cloud STS servers and Redis are the test suite's own
// (test/support/*.ts), not copies: vite (a dev dependency, vitest's engine) compiles them on load,
// so a fix to a fake reaches the tests and the benchmark at once.
import { fileURLToPath } from 'node:url';
import { runnerImport } from 'vite';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The module test/support/<file> (TypeScript), compiled and loaded. */
export async function testSupport(file) {
  const { module } = await runnerImport(fileURLToPath(new URL(`../../test/support/${file}`, import.meta.url)), {
    root: ROOT,
    configFile: false,
    logLevel: 'error',
  });
  return module;
}
