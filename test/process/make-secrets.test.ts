// deploy/compose/make-secrets.sh as an operator runs it: the secrets it makes (the HS256 signing key and
// the runtime token) are mode 0600 and owned by the container's service user (the Dockerfile's USER uid),
// an existing world-readable one is tightened and kept, and without root it refuses rather than leave a
// secret someone else can read. Runs the real script on a copy in a temp directory.
import { spawnSync } from 'node:child_process';
import { copyFileSync, chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const SCRIPT = join(ROOT, 'deploy/compose/make-secrets.sh');
/** The uid the image runs as, from the Dockerfile itself (`USER uid:gid`). */
const SERVICE_UID = Number(/^USER (\d+):(\d+)$/m.exec(readFileSync(join(ROOT, 'deploy/container/Dockerfile'), 'utf8'))![1]);
const NAMES = ['runtime-hs256', 'runtime-token'];

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'dnswarden-secrets-'));
  mkdirSync(join(dir, 'compose'));
  copyFileSync(SCRIPT, join(dir, 'compose/make-secrets.sh'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const run = (asNobody = false) => spawnSync(asNobody ? 'setpriv' : 'sh', asNobody
  ? ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', 'compose/make-secrets.sh']
  : ['compose/make-secrets.sh'], { cwd: dir, encoding: 'utf8', timeout: 20_000 });

describe('make-secrets.sh', () => {
  it('makes each secret 0600, owned by the service user of the image', () => {
    expect(process.getuid?.(), 'this test runs the script as root').toBe(0);
    expect(SERVICE_UID).toBe(10053);
    const r = run();
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
    for (const name of NAMES) {
      const st = statSync(join(dir, 'compose/secrets', name));
      expect((st.mode & 0o777).toString(8), name).toBe('600');
      expect(st.uid, name).toBe(SERVICE_UID);
      expect(readFileSync(join(dir, 'compose/secrets', name), 'utf8')).toMatch(/^[0-9a-f]{64}$/);
    }
    expect((statSync(join(dir, 'compose/secrets')).mode & 0o777).toString(8)).toBe('700');
    // The fleet's Redis password: the service user reads it, and the redis container's group (999), nobody else.
    const redis = statSync(join(dir, 'compose/secrets/redis-password'));
    expect((redis.mode & 0o777).toString(8)).toBe('640');
    expect([redis.uid, redis.gid]).toEqual([SERVICE_UID, 999]);
    expect(readFileSync(join(dir, 'compose/secrets/redis-password'), 'utf8')).toMatch(/^[0-9a-f]{64}$/);
  });

  it('keeps an existing secret but tightens a world-readable one', () => {
    mkdirSync(join(dir, 'compose/secrets'));
    const file = join(dir, 'compose/secrets/runtime-hs256');
    writeFileSync(file, 'an-existing-secret-made-by-the-old-script-0123456789');
    chmodSync(file, 0o644);
    const r = run();
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
    expect(readFileSync(file, 'utf8')).toBe('an-existing-secret-made-by-the-old-script-0123456789');
    expect((statSync(file).mode & 0o777).toString(8)).toBe('600');
    expect(statSync(file).uid).toBe(SERVICE_UID);
  });

  it('without root: refuses, naming why, and writes no secret', () => {
    chmodSync(dir, 0o777); // so only the missing privilege can stop it
    chmodSync(join(dir, 'compose'), 0o777);
    const r = run(true);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/run as root/);
    for (const name of NAMES) expect(existsSync(join(dir, 'compose/secrets', name))).toBe(false);
  });
});
