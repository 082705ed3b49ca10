// Issue 2, `dnswarden check-config FILE` as a user runs it: the built CLI, exit 0 for every file in
// fixtures/configs/valid, non-zero for every file in fixtures/configs/invalid with a message that
// names the offending field path (each invalid file states it in a `# expect: <path>` line). It reads
// the key and token files a config names exactly as serve does, so "valid" means serve starts.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
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

  it('the local example (examples/local/dnswarden.yaml, run from the repository root) is valid, its key and token files included', () => {
    const run = checkConfig('examples/local/dnswarden.yaml');
    expect(run.status, run.output).toBe(0);
  });

  it('a file that does not exist → non-zero, naming the file', () => {
    const missing = join(CONFIGS, 'no-such-config.yaml');
    const run = checkConfig(missing);
    expect(run.status).not.toBe(0);
    expect(run.output).toContain('no-such-config.yaml');
  });

  it.each([['empty', ''], ['whitespace only', '  \n\n\t\n'], ['comments only', '# dnswarden config\n# (the rest was lost in a truncated write)\n']])(
    'a %s file → exit 2 (the embedded defaults apply only with no file)',
    (_what, text) => {
      const dir = mkdtempSync(join(tmpdir(), 'dnswarden-check-config-'));
      try {
        writeFileSync(join(dir, 'truncated.yaml'), text);
        const run = checkConfig(join(dir, 'truncated.yaml'));
        expect(run.status, run.output).toBe(2);
        expect(run.output).toMatch(/truncated\.yaml: the file is empty/);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  );

  it('loads referenced files as serve does: existing key and token files → valid; serve and check-config agree on a missing one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dnswarden-check-config-'));
    try {
      writeFileSync(join(dir, 'hs256.key'), 'a-registration-secret-of-32-plus-characters\n', { mode: 0o600 });
      writeFileSync(join(dir, 'runtime-token'), 'runtime-token-0123456789\n', { mode: 0o600 });
      const config = (keyFile: string) => stringify({
        listen: { dns: ['127.0.0.1:0'], admin: '127.0.0.1:0' },
        storage: { dir: join(dir, 'data') },
        upstreams: [{ address: '127.0.0.1:9' }],
        admin: { token: 'check-config-admin-token-0123', tokens: [{ name: 'runtime', kind: 'runtime', token_file: join(dir, 'runtime-token') }] },
        sessions: { signing_keys: [{ kid: 'hs', alg: 'HS256', secret_file: keyFile }] },
      });
      writeFileSync(join(dir, 'good.yaml'), config(join(dir, 'hs256.key')));
      expect(checkConfig(join(dir, 'good.yaml')).status).toBe(0);
      writeFileSync(join(dir, 'bad.yaml'), config(join(dir, 'no-such.key')));
      const checked = checkConfig(join(dir, 'bad.yaml'));
      expect(checked.status).toBe(2);
      expect(checked.output).toMatch(/sessions\.signing_keys\[0\]\.secret_file: cannot read/);
      const served = spawnSync(process.execPath, [CLI, 'serve', '--config', join(dir, 'bad.yaml')], { cwd: dir, encoding: 'utf8', timeout: 20_000 });
      expect(served.status).toBe(2);
      expect(served.stderr).toMatch(/sessions\.signing_keys\[0\]\.secret_file: cannot read/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('serve with storage.dir under /proc fails at once naming storage.dir (no spin at 100 % CPU)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'dnswarden-check-config-'));
    try {
      writeFileSync(join(dir, 'proc.yaml'), stringify({
        listen: { dns: ['127.0.0.1:0'], admin: '127.0.0.1:0' }, upstreams: [{ address: '127.0.0.1:9' }], storage: { dir: '/proc/1/dnswarden-data' },
      }));
      const served = spawnSync(process.execPath, [CLI, 'serve', '--config', join(dir, 'proc.yaml')], { cwd: dir, encoding: 'utf8', timeout: 20_000 });
      expect(served.signal, 'serve did not exit within 20 s').toBeNull();
      expect(served.status).not.toBe(0);
      expect(served.stderr).toMatch(/storage\.dir "\/proc\/1\/dnswarden-data"/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('YAML that does not parse → non-zero', () => {
    const run = spawnSync(process.execPath, [CLI, 'check-config', '/dev/stdin'], { cwd: ROOT, encoding: 'utf8', input: 'listen: [unclosed\n', timeout: 20_000 });
    expect(run.status).not.toBe(0);
    expect(run.status).not.toBeNull();
  });
});
