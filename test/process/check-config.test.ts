// Issue 2, `dnswarden check-config FILE` as a user runs it: the built CLI, exit 0 for every file in
// fixtures/configs/valid, non-zero for every file in fixtures/configs/invalid with a message that
// names the offending field path (each invalid file states it in a `# expect: <path>` line).
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'dist/src/cli.js');
const CONFIGS = join(ROOT, 'fixtures/configs');

function checkConfig(...args: string[]): { status: number | null; output: string } {
  const run = spawnSync(process.execPath, [CLI, 'check-config', ...args], { cwd: ROOT, encoding: 'utf8', timeout: 20_000 });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

const valid = readdirSync(join(CONFIGS, 'valid')).filter((f) => f.endsWith('.yaml')).sort();
const invalid = readdirSync(join(CONFIGS, 'invalid')).filter((f) => f.endsWith('.yaml')).sort();

/** The path must appear as a whole path, not as the prefix of a longer one (`upstream` ≠ `upstreams`). */
const namesPath = (path: string) => new RegExp(`(^|[^\\w.\\]])${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![\\w[]|\\.\\w)`, 'm');

describe('check-config', () => {
  it('the CLI is built (npm test builds first)', () => {
    expect(existsSync(CLI), `${CLI} missing: run npm run build`).toBe(true);
    expect(valid.length).toBeGreaterThanOrEqual(3);
    expect(invalid.length).toBeGreaterThanOrEqual(10);
  });

  it.each(valid)('valid/%s → exit 0', (file) => {
    const run = checkConfig(join(CONFIGS, 'valid', file));
    expect(run.status, run.output).toBe(0);
  });

  it.each(invalid)('invalid/%s → non-zero exit naming the field path', (file) => {
    const text = readFileSync(join(CONFIGS, 'invalid', file), 'utf8');
    const expected = [...text.matchAll(/^# expect: (\S+)$/gm)].map((m) => m[1]!);
    expect(expected.length, `${file} has no "# expect: <path>" line`).toBeGreaterThan(0);
    const run = checkConfig(join(CONFIGS, 'invalid', file));
    expect(run.status).not.toBe(0);
    expect(run.status).not.toBeNull();
    for (const path of expected) expect(run.output).toMatch(namesPath(path));
  });

  it('a file that does not exist → non-zero, naming the file', () => {
    const missing = join(CONFIGS, 'no-such-config.yaml');
    const run = checkConfig(missing);
    expect(run.status).not.toBe(0);
    expect(run.output).toContain('no-such-config.yaml');
  });

  it('YAML that does not parse → non-zero', () => {
    const run = spawnSync(process.execPath, [CLI, 'check-config', '/dev/stdin'], { cwd: ROOT, encoding: 'utf8', input: 'listen: [unclosed\n', timeout: 20_000 });
    expect(run.status).not.toBe(0);
    expect(run.status).not.toBeNull();
  });
});
