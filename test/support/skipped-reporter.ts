import type { Reporter, TestCase, TestModule, Vitest } from 'vitest/node';

/**
 * Why a test is skipped, when it is skipped before it runs: a test or suite declared with
 * `{ skip: condition, meta: { skipReason } }` (meta is inherited by the tests of a suite).
 * A test that decides at run time says why with `ctx.skip(reason)` instead; vitest keeps the
 * reason as the result's note.
 */
declare module '@vitest/runner' {
  interface TaskMeta {
    skipReason?: string;
  }
}

/** What is said of a skipped test that gave no reason (and was not left out by a -t filter). */
export const NO_REASON = 'NO REASON GIVEN: skip with ctx.skip(reason), or declare { skip: condition, meta: { skipReason } }';

/**
 * Lists every skipped test at the end of the run, with the reason the test gave, so a skip is
 * never silent: "14 skipped" says nothing of what did not run, or why. Registered by
 * vitest.config.ts after whatever reporters the command line chose.
 */
export class SkippedReporter implements Reporter {
  #vitest: Vitest | undefined;

  onInit(vitest: Vitest): void {
    this.#vitest = vitest;
  }

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const pattern = this.#vitest?.config.testNamePattern;
    const skipped: Array<{ where: string; reason: string; todo: boolean }> = [];
    let notSelected = 0;
    for (const module of testModules) {
      for (const test of module.children.allTests('skipped')) {
        const reason = reasonFor(test);
        // A -t filter skips every test whose name it does not match; those are not the tests' own skips.
        if (reason === undefined && pattern && !selectedBy(pattern, test)) {
          notSelected++;
          continue;
        }
        skipped.push({ where: `${module.relativeModuleId} > ${test.fullName}`, reason: reason ?? NO_REASON, todo: test.options.mode === 'todo' });
      }
    }
    if (skipped.length === 0 && notSelected === 0) return;
    const lines = [''];
    if (skipped.length > 0) {
      const todos = skipped.filter((s) => s.todo).length;
      const counts = todos > 0 ? `${skipped.length - todos} skipped, ${todos} todo` : `${skipped.length}`;
      lines.push(` Skipped tests (${counts}), each with the reason it gave:`);
      for (const s of skipped) lines.push(`   - ${s.where}`, `       ${s.reason}`);
    }
    if (notSelected > 0) lines.push(` (${notSelected} more not selected by the -t filter)`);
    lines.push('');
    const log = this.#vitest ? (s: string) => this.#vitest!.logger.log(s) : (s: string) => console.log(s);
    log(lines.join('\n'));
  }
}

/** The reason a skipped test gave: ctx.skip(reason), else its declared meta.skipReason; "todo" for a todo. */
export function reasonFor(test: TestCase): string | undefined {
  const result = test.result();
  const note = result.state === 'skipped' ? result.note : undefined;
  if (note) return note;
  const declared = test.meta().skipReason;
  if (declared) return declared;
  if (test.options.mode === 'todo') return 'todo: not written yet';
  // vitest marks the tests of a suite whose beforeAll failed as skipped, with no note; the suite
  // (or file) has errors of its own then, not just failed children.
  for (let p: TestCase['parent'] = test.parent; ; p = p.parent) {
    if (p.errors().length > 0) return `not run: ${p.type === 'module' ? 'its file' : `its suite "${p.name}"`} failed before it (see the failure above)`;
    if (p.type === 'module') break;
  }
  return undefined;
}

/** Whether a -t pattern matches the test's name as vitest matches it (its suites' names and its own, space-separated). */
function selectedBy(pattern: RegExp, test: TestCase): boolean {
  const names: string[] = [test.name];
  for (let p = test.parent; p.type === 'suite'; p = p.parent) names.unshift(p.name);
  return pattern.test(names.join(' '));
}

export default SkippedReporter;
