// fleet.redis under concurrent changes, as users run it: a real redis-server, `dnswarden serve` processes (the
// built CLI, each with its own store and ports), a real NSD upstream, clients on loopback addresses. Checks
// (README, "Running a fleet"):
// - the learned deny list is shared entry by entry: adds and removals made on two replicas at once, interleaved,
//   all hold; every replica (and one started afterwards) ends with exactly the union of the adds minus the removals.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exited, spawnServe } from '../helpers/serve-process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { query } from '../helpers/dns-client.js';
import { metricValue } from '../helpers/warden.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

const TOKEN = 'fleet-consistency-admin-token-0123456789';
const HS_SECRET = 'fleet-consistency-registration-secret-0123456789';
const FLEET = `consistency-${process.pid}`;

interface Replica {
  readonly name: string;
  readonly dir: string;
  child: ChildProcess;
  output: string;
  dns: { address: string; port: number };
  adminUrl: string;
}

let upstream: Upstream;
let redis: RedisServer;
let root: string;
const replicas = new Map<string, Replica>();

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

function configOf(name: string, dir: string): Record<string, unknown> {
  return {
    listen: { dns: ['127.0.0.1:0'], admin: '127.0.0.1:0' },
    admin: { token: TOKEN },
    storage: { dir: join(dir, 'data') },
    upstreams: [{ address: upstream.hostPort }],
    sessions: {
      static: name === 'A' ? [{ id: 'static-a', addresses: ['127.0.3.30/32'], type: 'interactive', user: 'ops', role: 'dev' }] : [],
      signing_keys: [{ kid: 'runtime', alg: 'HS256', secret: HS_SECRET }],
    },
    fleet: { name: FLEET, redis: { url: redis.url } },
    logging: { level: 'info' },
  };
}

async function waitLine(r: Replica, msg: string, from: number, timeoutMs = 30_000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    for (const line of r.output.slice(from).split('\n')) if (line.includes(`"msg":"${msg}"`)) return JSON.parse(line) as Record<string, unknown>;
    if (r.child.exitCode !== null) throw new Error(`replica ${r.name} exited:\n${r.output}`);
    await sleep(20);
  }
  throw new Error(`replica ${r.name}: no "${msg}" line:\n${r.output}`);
}

async function launch(name: string): Promise<Replica> {
  const dir = mkdtempSync(join(root, `${name}-`));
  const configPath = join(dir, 'dnswarden.yaml');
  writeFileSync(configPath, stringify(configOf(name, dir)));
  const r: Replica = { name, dir, child: undefined as unknown as ChildProcess, output: '', dns: { address: '127.0.0.1', port: 0 }, adminUrl: '' };
  r.child = spawnServe(configPath, dir, (text) => void (r.output += text));
  const ready = await waitLine(r, 'dnswarden ready', 0);
  r.dns = { address: '127.0.0.1', port: Number((ready['dns'] as string[])[0]!.split(':')[1]) };
  r.adminUrl = ready['admin'] as string;
  replicas.set(name, r);
  return r;
}

const rep = (name: string): Replica => replicas.get(name)!;

async function admin(r: Replica, path: string, init: { method?: string; body?: unknown } = {}): Promise<{ status: number; json: any; text: string }> {
  const res = await fetch(`${r.adminUrl}${path}`, {
    method: init.method ?? 'GET',
    headers: { authorization: `Bearer ${TOKEN}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  const text = await res.text();
  let json: unknown;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text };
}

async function metric(r: Replica, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  return metricValue((await admin(r, '/metrics')).text, name, labels);
}

/** Polls `check` until it holds; throws past `timeoutMs` with what `last` said. */
async function within(timeoutMs: number, what: string, check: () => Promise<boolean>, last: () => unknown = () => undefined): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (last: ${JSON.stringify(last())})`);
    await sleep(50);
  }
}

/** Runs `jobs` with at most `width` in flight (a bounded burst of concurrent API calls). */
async function inParallel<T>(jobs: readonly (() => Promise<T>)[], width: number): Promise<T[]> {
  const out: T[] = new Array<T>(jobs.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < jobs.length) {
      const i = next++;
      out[i] = await jobs[i]!();
    }
  }));
  return out;
}

const firstFew = (list: readonly string[]): string => `${list.length}: ${list.slice(0, 5).join(' ')}${list.length > 5 ? ' …' : ''}`;
const denied = async (r: Replica): Promise<string[]> => ((await admin(r, '/v1/deny')).json.domains as { domain: string }[]).map((d) => d.domain).sort();

beforeAll(async () => {
  upstream = await startUpstream();
  redis = await startRedis();
  root = mkdtempSync(join(tmpdir(), 'dnswarden-fleet-consistency-'));
  await Promise.all(['A', 'B'].map((n) => launch(n)));
  for (const r of replicas.values()) await within(10_000, `${r.name} connected`, async () => (await metric(r, 'dnswarden_fleet_redis_connected')) === 1);
}, 60_000);

afterAll(async () => {
  for (const r of replicas.values()) {
    if (r.child.exitCode === null && r.child.signalCode === null) {
      r.child.kill('SIGKILL');
      await exited(r.child, 5000).catch(() => undefined);
    }
  }
  await redis?.stop();
  await upstream?.stop();
  if (root !== undefined) rmSync(root, { recursive: true, force: true });
});

describe('fleet.redis: the learned deny list, entry by entry', () => {
  it('adds and removals made on two replicas at once, interleaved, all hold: every replica ends with the union of the adds minus the removals', async () => {
    const [a, b] = [rep('A'), rep('B')];
    const N = 40;
    const add = (r: Replica, domain: string) => async () => {
      const res = await admin(r, '/v1/deny', { method: 'POST', body: { domain, reason: `added on ${r.name}` } });
      expect(res.status, res.text).toBe(201);
    };
    // Round 1: A and B add at once, interleaved (each with several requests in flight); some domains on both.
    const round1: (() => Promise<void>)[] = [];
    for (let i = 0; i < N; i++) round1.push(add(a, `a${i}.deny-race.test`), add(b, `b${i}.deny-race.test`));
    for (let i = 0; i < 5; i++) round1.push(add(a, `both${i}.deny-race.test`), add(b, `both${i}.deny-race.test`));
    await inParallel(round1, 8);
    const expected = new Set<string>([
      ...Array.from({ length: N }, (_, i) => `a${i}.deny-race.test`),
      ...Array.from({ length: N }, (_, i) => `b${i}.deny-race.test`),
      ...Array.from({ length: 5 }, (_, i) => `both${i}.deny-race.test`),
    ]);
    let seen: Record<string, string[]> = {};
    const converged = async (): Promise<boolean> => {
      seen = {};
      for (const r of replicas.values()) seen[r.name] = await denied(r);
      return Object.values(seen).every((list) => JSON.stringify(list) === JSON.stringify([...expected].sort()));
    };
    await within(10_000, 'both replicas hold every add', converged, () => Object.fromEntries(Object.entries(seen).map(([n, l]) => [n, { count: l.length, missing: firstFew([...expected].filter((d) => !l.includes(d))) }])));

    // Round 2, again at once: each replica removes some of the other's entries (and of the shared ones) while
    // both go on adding.
    const remove = (r: Replica, domain: string) => async () => {
      const res = await admin(r, `/v1/deny/${domain}`, { method: 'DELETE' });
      expect(res.status, res.text).toBe(204);
      expected.delete(domain);
    };
    const round2: (() => Promise<void>)[] = [];
    for (let i = 0; i < N; i++) {
      if (i % 3 === 0) round2.push(remove(a, `b${i}.deny-race.test`));
      if (i % 4 === 1) round2.push(remove(b, `a${i}.deny-race.test`));
      round2.push(add(i % 2 === 0 ? a : b, `c${i}.deny-race.test`));
      expected.add(`c${i}.deny-race.test`);
    }
    round2.push(remove(a, 'both0.deny-race.test'), remove(b, 'both1.deny-race.test'));
    await inParallel(round2, 8);
    expect(expected.size).toBe(2 * N + 5 + N - 14 - 10 - 2);
    await within(10_000, 'both replicas hold the adds minus the removals', converged, () => Object.fromEntries(Object.entries(seen).map(([n, l]) => [n, { count: l.length, missing: firstFew([...expected].filter((d) => !l.includes(d))), extra: firstFew(l.filter((d) => !expected.has(d))) }])));

    // A replica started now reads the same list from the shared record (removed entries included: they stay removed).
    const c = await launch('C');
    expect(await denied(c)).toEqual([...expected].sort());
    // What the lists say is what A enforces: an entry B added blocks there, one A removed (B's) does not.
    expect((await query({ server: a.dns, bind: '127.0.3.30', name: 'www.c1.deny-race.test', type: 'A', transport: 'udp' })).ede?.text).toMatch(/^learned_deny/);
    expect((await query({ server: a.dns, bind: '127.0.3.30', name: 'www.b0.deny-race.test', type: 'A', transport: 'udp' })).ede?.text ?? '').not.toMatch(/^learned_deny/);
  }, 120_000);
});
