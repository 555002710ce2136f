import { defineConfig } from 'vitest/config';
import { SkippedReporter } from './test/support/skipped-reporter.js';

export default defineConfig({
  plugins: [
    {
      name: 'crosscred:skipped-tests',
      // Every skipped test with its reason, at the end of the run. Added here rather than in
      // test.reporters, which --reporter on the command line replaces (as .ci/run's does): this
      // hook runs once the reporters are resolved, so the list follows whichever were chosen.
      configureVitest({ vitest }) {
        if (!vitest.config.reporters.some((r) => r instanceof SkippedReporter)) vitest.config.reporters.push(new SkippedReporter());
      },
    },
  ],
  test: {
    include: ['test/**/*.test.ts'],
    // Integration and end-to-end tests start real servers and processes; give them room on a shared 2-core machine.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // E2E tests spawn CLIs and the daemon; running too many files at once on 2 cores only adds noise.
    maxWorkers: 2,
    // The pinned AWS SDK's Node 22 notice is noise here (see src/cli/main.ts).
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
  },
});
