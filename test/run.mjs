// Runs the whole vitest suite and ends with the plain line CI reads: "N passed, N failed".
// The counts come from vitest's JSON report, so a run that executed no test says "0 passed".
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'dnswarden-test-'));
const report = join(dir, 'report.json');
const run = spawnSync(
  process.execPath,
  ['node_modules/vitest/vitest.mjs', 'run', '--config', 'test/vitest.config.ts', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...process.argv.slice(2)],
  { stdio: 'inherit' },
);
let passed = 0;
let failed = 0;
let skipped = 0;
try {
  const json = JSON.parse(readFileSync(report, 'utf8'));
  passed = json.numPassedTests;
  failed = json.numFailedTests;
  skipped = json.numPendingTests + json.numTodoTests;
  // A file that failed to load, or whose beforeAll/afterAll failed (its tests then show as skipped),
  // has no failed test in the count: count the file itself as a failure.
  for (const file of json.testResults ?? []) {
    if (file.status === 'failed' && !file.assertionResults.some((a) => a.status === 'failed')) failed += 1;
  }
} catch (err) {
  console.error(`could not read the vitest report: ${err.message}`);
  failed += 1;
}
rmSync(dir, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ''}`);
process.exitCode = run.status === 0 && failed === 0 && passed > 0 ? 0 : 1;
