// Refused sources are visible (a real `dnswarden serve`, a real NSD): a query from an address with no
// session is counted in dnswarden_refused_total by reason, and logged at info — the first at once, the
// rest of the interval (logging.refused_interval_s) as one line with the count — never one line per query.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exited, spawnServe } from '../helpers/serve-process.js';
import { query } from '../helpers/dns-client.js';
import { FIXTURE, freePort, startUpstream, type Upstream } from '../helpers/upstream.js';
import { metricValue } from '../helpers/warden.js';

const TOKEN = 'refused-log-test-admin-token-0123456789';
let upstream: Upstream;
let dir: string;
let dnsPort: number;
let adminPort: number;
let child: ChildProcess | undefined;
let output = '';
const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

function logLines(): Record<string, unknown>[] {
  return output.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms; output:\n${output}`);
    if (child?.exitCode !== null && child?.exitCode !== undefined) throw new Error(`serve exited:\n${output}`);
    await sleep(50);
  }
}

beforeAll(async () => {
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'dnswarden-refused-'));
  dnsPort = await freePort();
  adminPort = await freePort();
  const configPath = join(dir, 'dnswarden.yaml');
  writeFileSync(configPath, stringify({
    listen: { dns: [`127.0.0.1:${dnsPort}`], admin: `127.0.0.1:${adminPort}` },
    admin: { token: TOKEN },
    storage: { dir: join(dir, 'data') },
    upstreams: [{ address: upstream.hostPort }],
    sessions: { static: [{ id: 'local', addresses: ['127.0.0.1/32'], type: 'interactive', user: 'dev', role: 'developer' }] },
    logging: { level: 'info', refused_interval_s: 2 },
  }));
  child = spawnServe(configPath, dir, (text) => void (output += text));
  await waitFor('dnswarden ready', () => output.includes('"dnswarden ready"'));
});

afterAll(async () => {
  if (child !== undefined && child.exitCode === null) {
    child.kill('SIGTERM');
    await exited(child, 10_000).catch(() => child?.kill('SIGKILL'));
  }
  await upstream?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

describe('refused sources', () => {
  it('are counted by reason and logged once at once, then once per interval with the count', async () => {
    const server = { address: '127.0.0.1', port: dnsPort };
    for (let i = 0; i < 6; i++) expect((await query({ server, bind: '127.0.0.3', name: FIXTURE.a.name, type: 'A' })).rcode).toBe('REFUSED');
    expect((await query({ server, name: FIXTURE.a.name, type: 252, transport: 'tcp' })).rcode).toBe('REFUSED'); // AXFR: unsupported
    expect((await query({ server, name: FIXTURE.a.name, type: 'A' })).rcode).toBe('NOERROR');

    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).text();
    expect(metricValue(metrics, 'dnswarden_refused_total', { reason: 'no_session' })).toBe(6);
    expect(metricValue(metrics, 'dnswarden_refused_total', { reason: 'unsupported' })).toBe(1);
    expect(metricValue(metrics, 'dnswarden_refused_total', { reason: 'expired' })).toBe(0);

    const from3 = () => logLines().filter((l) => l['event'] === 'refused' && l['source'] === '127.0.0.3');
    const counted = () => from3().reduce((sum, l) => sum + (l['count'] as number), 0);
    await waitFor('every refusal from 127.0.0.3 in the log', () => counted() >= 6);
    const lines = from3();
    expect(counted()).toBe(6);
    expect(lines[0]).toMatchObject({ level: 30, msg: 'query refused', reason: 'no_session', count: 1 });
    // The rest in summaries (one, unless the CPU was so slow the six queries spanned an interval), each at
    // least an interval after the line before it.
    expect(lines.length).toBeLessThan(6);
    for (const [i, l] of lines.slice(1).entries()) {
      expect(l).toMatchObject({ level: 30, msg: 'queries refused', reasons: { no_session: l['count'] } });
      expect(Date.parse(l['time'] as string) - Date.parse(lines[i]!['time'] as string)).toBeGreaterThanOrEqual(2000);
    }
    const local = logLines().filter((l) => l['event'] === 'refused' && l['source'] === '127.0.0.1');
    expect(local).toHaveLength(1);
    expect(local[0]).toMatchObject({ reason: 'unsupported', count: 1 });
    expect(output).not.toContain(TOKEN);
  });
});
