// The operability issue, item 8, as an operator meets it: `dnswarden backup FILE` copies a running server's
// store (read-only connection, SQLite online backup) into one file that opens and holds the quarantines; a
// store from a newer release stops `serve` with one line naming both schema versions. The built CLI, a real
// `serve` process, a real NSD.
import Database from 'better-sqlite3';
import { execFile, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, exited, spawnServe } from '../helpers/serve-process.js';
import { query } from '../helpers/dns-client.js';
import { FIXTURE, freePort, startUpstream, type Upstream } from '../helpers/upstream.js';
import { STORE_FILE, STORE_SCHEMA_VERSION, Store } from '../../src/store.js';

const EXFIL = [
  'mzxw6ytboi3tqnbrgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmr.a.exfil.dnswarden.test',
  'kfvgs4tfmvxgk3tufzqxg43pn5xw4zlsmfwgs3temvzhs5dfnzsxg2lpnzsxa7q.b.exfil.dnswarden.test',
];

let upstream: Upstream;
let dir: string;
let configPath: string;
let dnsPort: number;
let child: ChildProcess | undefined;
let output = '';

interface Run { readonly code: number; readonly stdout: string; readonly stderr: string }
function cli(args: string[]): Promise<Run> {
  return new Promise((ok) => {
    execFile(process.execPath, [CLI, ...args], { cwd: dir, timeout: 60_000 }, (err, stdout, stderr) => {
      ok({ code: err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1, stdout, stderr });
    });
  });
}

async function waitFor(what: string, proc: ChildProcess): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!output.includes(what)) {
    if (proc.exitCode !== null) throw new Error(`serve exited (${proc.exitCode}):\n${output}`);
    if (Date.now() > deadline) throw new Error(`no "${what}":\n${output}`);
    await new Promise((ok) => setTimeout(ok, 50));
  }
}

function writeConfig(storageDir: string): string {
  const path = join(dir, `dnswarden-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(path, stringify({
    listen: { dns: [`127.0.0.1:${dnsPort}`], admin: '127.0.0.1:0' },
    admin: { token: 'backup-test-admin-token-0123456789' },
    storage: { dir: storageDir },
    upstreams: [{ address: upstream.hostPort }],
    sessions: { static: [{ id: 'nightly-report', addresses: ['127.0.0.1/32'], type: 'scheduled', user: 'ops', role: 'reporter' }] },
    logging: { level: 'info' },
  }));
  return path;
}

beforeAll(async () => {
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'dnswarden-backup-'));
  dnsPort = await freePort();
  configPath = writeConfig(join(dir, 'data'));
});

afterAll(async () => {
  if (child !== undefined && child.exitCode === null) {
    child.kill('SIGKILL');
    await exited(child, 10_000).catch(() => undefined);
  }
  await upstream?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('dnswarden backup', () => {
  it('copies a running server\'s store, while it answers, into one file that holds the quarantine', async () => {
    output = '';
    child = spawnServe(configPath, dir, (t) => void (output += t));
    await waitFor('"dnswarden ready"', child);
    const server = { address: '127.0.0.1', port: dnsPort };
    for (const name of EXFIL) await query({ server, name, type: 'TXT' });
    expect((await query({ server, name: FIXTURE.a.name, type: 'A' })).ede?.text).toMatch(/^session quarantined \(qr-/);

    // The server keeps answering (and writing) while the copy is taken.
    const file = join(dir, 'backup.sqlite');
    const traffic = Promise.all(Array.from({ length: 20 }, (_, i) => query({ server, name: `n${i}.${FIXTURE.zone}`, type: 'A' }).catch(() => undefined)));
    const r = await cli(['backup', file, '--config', configPath]);
    await traffic;
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${file}: the store (schema version ${STORE_SCHEMA_VERSION}, 1 quarantines, ${statSync(file).size} bytes)\n`);
    expect(existsSync(`${file}-wal`) || existsSync(`${file}.partial`)).toBe(false); // one self-contained file

    const copy = new Database(file, { readonly: true });
    expect(copy.pragma('user_version', { simple: true })).toBe(STORE_SCHEMA_VERSION);
    expect(copy.pragma('journal_mode', { simple: true })).toBe('delete');
    copy.close();
    // Restored as a store, it opens and holds the open quarantine with its evidence.
    const restored = join(dir, 'restored');
    mkdirSync(restored);
    copyFileSync(file, join(restored, STORE_FILE));
    const store = Store.open(restored);
    try {
      const [q] = store.listQuarantines();
      expect(q).toMatchObject({ sessionId: 'nightly-report', state: 'open', session: { user: 'ops' } });
      expect(q!.evidence).toBeTruthy();
    } finally {
      store.close();
    }

    // Never overwrites; --json for scripts; the server was never disturbed.
    const again = await cli(['backup', file, '--config', configPath]);
    expect(again.code).toBe(64);
    expect(again.stderr).toBe(`dnswarden: ${file} exists: a backup never overwrites a file; choose a new name\n`);
    const json = await cli(['backup', join(dir, 'backup2.sqlite'), '--config', configPath, '--json']);
    expect(json.code, json.stderr).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({ file: join(dir, 'backup2.sqlite'), version: STORE_SCHEMA_VERSION, quarantines: 1 });
    expect((await query({ server, name: FIXTURE.a.name, type: 'A' })).ede?.text).toMatch(/^session quarantined \(qr-/);
    child.kill('SIGTERM');
    expect((await exited(child, 20_000)).code).toBe(0);
  }, 120_000);

  it('no store yet: exit 66 naming the file', async () => {
    const r = await cli(['backup', join(dir, 'none.sqlite'), '--config', writeConfig(join(dir, 'empty'))]);
    expect(r.code).toBe(66);
    expect(r.stderr).toBe(`dnswarden: no store at ${join(dir, 'empty', STORE_FILE)} (storage.dir of the config)\n`);
  });
});

describe('a store from a newer release', () => {
  it('stops serve with one line naming both schema versions; the store is left as it was', async () => {
    const storageDir = join(dir, 'newer');
    Store.open(storageDir).close();
    const db = new Database(join(storageDir, STORE_FILE));
    db.pragma(`user_version = ${STORE_SCHEMA_VERSION + 1}`);
    db.close();
    output = '';
    child = spawnServe(writeConfig(storageDir), dir, (t) => void (output += t));
    const { code } = await exited(child, 30_000);
    expect(code).toBe(1);
    expect(output).toContain(`dnswarden: the store in ${storageDir} has schema version ${STORE_SCHEMA_VERSION + 1}, newer than version ${STORE_SCHEMA_VERSION} that this dnswarden knows: it was written by a newer release; run that release, or restore a backup taken before the upgrade\n`);
    const after = new Database(join(storageDir, STORE_FILE), { readonly: true });
    expect(after.pragma('user_version', { simple: true })).toBe(STORE_SCHEMA_VERSION + 1);
    after.close();
  }, 60_000);
});
