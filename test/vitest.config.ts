import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Unit tests are pure and run in parallel; integration and process tests share loopback
// ports, a real upstream process and two CPU cores, so their files run one at a time.
export default defineConfig({
  // This file lives in test/ so the top level stays as the project layout says; paths are from the root.
  root: fileURLToPath(new URL('..', import.meta.url)),
  test: {
    projects: [
      { test: { name: 'unit', include: ['test/unit/**/*.test.ts'], testTimeout: 30_000 } },
      {
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', 'test/process/**/*.test.ts', 'test/netns/**/*.test.ts', 'test/conventions.test.ts'],
          fileParallelism: false,
          testTimeout: 60_000,
          hookTimeout: 60_000,
        },
      },
    ],
  },
});
