import { defineConfig } from 'vitest/config';

export default defineConfig({
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
