// Issue 16 part A, the built CLI: a zone file relative to the config file's directory is served with AA;
// a broken zone file fails `serve` with exit 2 naming the field and file:line; SIGHUP with a broken zone
// file keeps the running zones (config_reloads_total{result="error"}), SIGHUP with a fixed one swaps them.
import type { ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startUpstream, type Upstream } from '../helpers/upstream.js';
import { exited, spawnServe } from '../helpers/serve-process.js';
import { dig } from '../helpers/dig.js';

const ADMIN_TOKEN = 'zones-process-admin-token-0123456789';
const zoneText = (address: string): string => `$ORIGIN lab.example.\n$TTL 60\n@ SOA ns hm 1 3600 600 86400 60\n@ NS ns\nns A 10.0.0.1\nhost A ${address}\n`;

let upstream: Upstream;
let dir: string;
let child: ChildProcess | undefined;
let output = '';
const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

beforeAll(async () => {
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'dnswarden-zones-process-'));
  mkdirSync(join(dir, 'zones'));
});
afterAll(async () => {
  if (child !== undefined && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await exited(child, 5000).catch(() => undefined);
  }
  await upstream?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function writeConfig(name: string, zoneFile: string): Promise<{ path: string; dnsPort: number; adminPort: number }> {
  const dnsPort = await freePort();
  const adminPort = await freePort();
  const path = join(dir, name);
  writeFileSync(path, stringify({
    listen: { dns: [`127.0.0.1:${dnsPort}`], admin: `127.0.0.1:${adminPort}` },
    admin: { token: ADMIN_TOKEN },
    storage: { dir: join(dir, `data-${name}`) },
    upstreams: [{ address: upstream.hostPort, timeout_ms: 1000 }],
    zones: [{ name: 'lab.example', file: zoneFile }],
    logging: { level: 'info' },
  }));
  return { path, dnsPort, adminPort };
}

async function reloadErrors(adminPort: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/metrics`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
  const m = /dnswarden_config_reloads_total\{result="error"\} (\d+)/.exec(await res.text());
  return Number(m?.[1] ?? -1);
}

describe('serve with local zones', () => {
  it('a broken zone file fails the start: exit 2, naming zones[0].file and file:line', async () => {
    writeFileSync(join(dir, 'zones', 'broken.zone'), `${zoneText('10.0.0.9')}bad A 10.0.0\n`);
    const { path } = await writeConfig('broken.yaml', 'zones/broken.zone');
    let out = '';
    const proc = spawnServe(path, '/', (t) => void (out += t)); // another cwd: the path is relative to the config file
    const { code } = await exited(proc, 20_000);
    expect(code).toBe(2);
    expect(out).toMatch(/zones\[0\]\.file: .*zones\/broken\.zone:7: /);
  });

  it('serves the zone (AA); SIGHUP with a broken file keeps it, with a fixed file swaps it', async () => {
    const zone = join(dir, 'zones', 'lab.zone');
    writeFileSync(zone, zoneText('10.0.0.7'));
    const { path, dnsPort, adminPort } = await writeConfig('good.yaml', 'zones/lab.zone');
    child = spawnServe(path, '/', (t) => void (output += t));
    const server = { address: '127.0.0.1', port: dnsPort };
    const deadline = Date.now() + 20_000;
    let answer = await dig({ server, name: 'host.lab.example' });
    while (answer.status !== 'NOERROR' && Date.now() < deadline) {
      if (child.exitCode !== null) throw new Error(`serve exited ${child.exitCode}: ${output}`);
      await sleep(100);
      answer = await dig({ server, name: 'host.lab.example' });
    }
    expect(answer.status, output).toBe('NOERROR');
    expect(answer.flags).toContain('aa');
    expect(answer.answers.map((a) => a.data)).toEqual(['10.0.0.7']);

    writeFileSync(zone, `${zoneText('10.0.0.8')}$INCLUDE missing.inc\n`);
    child.kill('SIGHUP');
    for (let i = 0; i < 200 && (await reloadErrors(adminPort)) < 1; i++) await sleep(100);
    expect(await reloadErrors(adminPort)).toBe(1);
    // One JSON log line names the field, the file:line and what is wrong.
    const failure = output.split('\n').filter((l) => l.includes('reload failed, keeping the running config')).map((l) => JSON.parse(l) as { err: string });
    expect(failure, output).toHaveLength(1);
    expect(failure[0]!.err).toMatch(/^zones\[0\]\.file: .*lab\.zone:7: \$INCLUDE: cannot read/);
    expect((await dig({ server, name: 'host.lab.example' })).answers.map((a) => a.data)).toEqual(['10.0.0.7']);

    writeFileSync(zone, zoneText('10.0.0.8'));
    child.kill('SIGHUP');
    let data: string[] = [];
    for (let i = 0; i < 200; i++) {
      data = (await dig({ server, name: 'host.lab.example' })).answers.map((a) => a.data);
      if (data[0] === '10.0.0.8') break;
      await sleep(100);
    }
    expect(data).toEqual(['10.0.0.8']);
    child.kill('SIGTERM');
    expect((await exited(child, 10_000)).code).toBe(0);
  });
});
