// fleet.redis under concurrent changes, as users run it: a real redis-server, `dnswarden serve` processes (the
// built CLI, each with its own store and ports), a real NSD upstream, clients on loopback addresses. Checks
// (README, "Running a fleet"):
// - the learned deny list is shared entry by entry: adds and removals made on two replicas at once, interleaved,
//   all hold; every replica (and one started afterwards) ends with exactly the union of the adds minus the removals;
// - a registration token whose session was ended through one replica is refused by every other (401
//   ERR_TOKEN_REVOKED), also by one that saw the end while Redis is away (its own record); one that could not know
//   (down when the session was ended, Redis away when the token is replayed) accepts it (fail-open, counted and
//   logged) and ends the session once Redis is back;
// - a renewal refused after its addresses were claimed (the store refused it) gives back the addresses it claimed
//   anew, and keeps its old ones; a renewal that leaves an address out gives that one back;
// - a session registered on another replica that overlaps a static session here does not shadow it: the
//   overlapping address is left out here (counted, logged); its other addresses are adopted as usual.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Redis } from 'ioredis';
import { SignJWT } from 'jose';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest, exited, spawnServe, waitLogLine, type AdminReply } from '../helpers/serve-process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { query, type DnsReply } from '../helpers/dns-client.js';
import { FIXTURE } from '../helpers/upstream.js';
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

function configOf(name: string, dir: string, fleet: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    listen: { dns: ['127.0.0.1:0'], admin: '127.0.0.1:0' },
    admin: { token: TOKEN },
    storage: { dir: join(dir, 'data') },
    upstreams: [{ address: upstream.hostPort }],
    sessions: {
      static: name === 'A' ? [{ id: 'static-a', addresses: ['127.0.3.30/32'], type: 'interactive', user: 'ops', role: 'dev' }] : [],
      signing_keys: [{ kid: 'runtime', alg: 'HS256', secret: HS_SECRET }],
    },
    fleet: { name: FLEET, redis: { url: redis.url }, ...fleet },
    logging: { level: 'info' },
  };
}

const waitLine = (r: Replica, msg: string, from: number, timeoutMs = 30_000): Promise<Record<string, unknown>> =>
  waitLogLine(r.child, () => r.output, msg, { from, timeoutMs, pollMs: 20, label: `replica ${r.name}` });

async function launch(name: string, dir = mkdtempSync(join(root, `${name}-`)), fleet: Record<string, unknown> = {}): Promise<Replica> {
  const configPath = join(dir, 'dnswarden.yaml');
  writeFileSync(configPath, stringify(configOf(name, dir, fleet)));
  const r: Replica = { name, dir, child: undefined as unknown as ChildProcess, output: '', dns: { address: '127.0.0.1', port: 0 }, adminUrl: '' };
  r.child = spawnServe(configPath, dir, (text) => void (r.output += text));
  const ready = await waitLine(r, 'dnswarden ready', 0);
  r.dns = { address: '127.0.0.1', port: Number((ready['dns'] as string[])[0]!.split(':')[1]) };
  r.adminUrl = ready['admin'] as string;
  replicas.set(name, r);
  return r;
}

const rep = (name: string): Replica => replicas.get(name)!;

const admin = (r: Replica, path: string, init: { method?: string; body?: unknown } = {}): Promise<AdminReply> => adminRequest(r.adminUrl, TOKEN, path, init);

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

const ask = (r: Replica, bind: string, name: string = FIXTURE.a.name): Promise<DnsReply> => query({ server: r.dns, bind, name, type: 'A', transport: 'udp' });
const answered = (reply: DnsReply): boolean => reply.rcode === 'NOERROR' && reply.answers.some((a) => a.data === FIXTURE.a.address);

/** A registration token for one address; `jti` tells it from every other token of the session. */
function token(sid: string, addresses: readonly string[], jti: string): Promise<string> {
  return new SignJWT({ sid, user: `user-${sid}`, role: 'agent', session_type: 'batch', addresses, jti, exp: Math.floor(Date.now() / 1000) + 3600 })
    .setProtectedHeader({ alg: 'HS256', kid: 'runtime' })
    .sign(new TextEncoder().encode(HS_SECRET));
}

const post = (r: Replica, jwt: string) => admin(r, '/v1/sessions', { method: 'POST', body: { token: jwt } });

async function kill9(r: Replica): Promise<void> {
  r.child.kill('SIGKILL');
  await exited(r.child, 10_000);
}

/** Registers `sid` on A with a fresh token, waits until B answers it, ends it through A and waits until B refuses it: the token, now spent. */
async function registeredThenEnded(a: Replica, b: Replica, sid: string, address: string, jti: string): Promise<string> {
  const jwt = await token(sid, [`${address}/32`], jti);
  expect((await post(a, jwt)).status).toBe(201);
  await within(5000, `${sid} on B`, async () => answered(await ask(b, address)));
  expect((await admin(a, `/v1/sessions/${sid}`, { method: 'DELETE' })).status).toBe(204);
  await within(5000, `end of ${sid} on B`, async () => (await ask(b, address)).rcode === 'REFUSED');
  return jwt;
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

describe('fleet.redis: a registration token of an ended session is refused on every replica', () => {
  it('ended through A: the same token posted to B, or to a replica started since, is refused (401 ERR_TOKEN_REVOKED) and registers nothing', async () => {
    const [a, b] = [rep('A'), rep('B')];
    const jwt = await registeredThenEnded(a, b, 'pod-t', '127.0.3.40', 't-1');
    // B saw the registration and its end (its own record refuses the token too); D, started now, saw neither: the
    // fleet's shared record refuses it there.
    const d = await launch('D');
    for (const r of [b, a, d]) {
      const replay = await post(r, jwt);
      expect(replay.status, `${r.name}: ${replay.text}`).toBe(401);
      expect(replay.json.error.code).toBe('ERR_TOKEN_REVOKED');
      expect(replay.json.error.message).toContain('pod-t');
      expect((await ask(r, '127.0.3.40')).rcode).toBe('REFUSED');
    }
    expect(await metric(d, 'dnswarden_fleet_token_checks_total', { result: 'revoked' })).toBe(1);
    await kill9(d);
    replicas.delete('D');
    // A new token for the same session is a new registration, on either replica.
    expect((await post(b, await token('pod-t', ['127.0.3.40/32'], 't-2'))).status).toBe(201);
    expect((await admin(b, '/v1/sessions/pod-t', { method: 'DELETE' })).status).toBe(204);
    for (const r of [a, b, d]) expect(r.output).not.toContain(jwt);
  });

  it('Redis away: a replica that saw the end refuses the token on its own record; a fresh registration is accepted, counted as unchecked and logged', async () => {
    const [a, b] = [rep('A'), rep('B')];
    const jwt = await registeredThenEnded(a, b, 'pod-u', '127.0.3.41', 'u-1');
    redis.pause();
    try {
      for (const r of [a, b]) await within(15_000, `${r.name} sees Redis not answering`, async () => (await metric(r, 'dnswarden_fleet_redis_connected')) === 0);
      const replay = await post(b, jwt);
      expect(replay.status, replay.text).toBe(401);
      expect(replay.json.error.code).toBe('ERR_TOKEN_REVOKED');
      const uncheckedBefore = (await metric(b, 'dnswarden_fleet_token_checks_total', { result: 'unchecked' })) ?? 0;
      const from = b.output.length;
      expect((await post(b, await token('pod-v', ['127.0.3.42/32'], 'v-1'))).status).toBe(201);
      expect(await metric(b, 'dnswarden_fleet_token_checks_total', { result: 'unchecked' })).toBe(uncheckedBefore + 1);
      const warned = await waitLine(b, "registration accepted without the fleet's record of ended sessions (a token of a session ended on another replica would get through here): checked when Redis is back", from, 5000);
      expect(warned['session']).toBe('pod-v');
    } finally {
      redis.resume();
    }
    for (const r of [a, b]) await within(20_000, `${r.name} reconnected and drained`, async () => (await metric(r, 'dnswarden_fleet_redis_connected')) === 1 && (await metric(r, 'dnswarden_fleet_outbox_events')) === 0);
    await within(5000, 'pod-v on A', async () => answered(await ask(a, '127.0.3.42')));
    expect(await metric(b, 'dnswarden_fleet_token_checks_total', { result: 'replayed' })).toBe(0);
    expect((await admin(b, '/v1/sessions/pod-v', { method: 'DELETE' })).status).toBe(204);
  }, 90_000);

  it('fleet.token_check: closed — Redis away, a registration with a token is refused (503 ERR_FLEET_UNAVAILABLE), counted and logged; accepted once Redis is back', async () => {
    const c = await launch('E', undefined, { token_check: 'closed' });
    try {
      redis.pause();
      const jwt = await token('pod-c', ['127.0.3.44/32'], 'c-1');
      let refused: AdminReply;
      try {
        await within(15_000, 'E sees Redis not answering', async () => (await metric(c, 'dnswarden_fleet_redis_connected')) === 0);
        const from = c.output.length;
        refused = await post(c, jwt);
        const line = await waitLine(c, 'registration refused: Redis cannot be asked whether its token was ended elsewhere (fleet.token_check: closed)', from, 5000);
        expect(line['session']).toBe('pod-c');
        expect(await metric(c, 'dnswarden_fleet_token_checks_total', { result: 'refused' })).toBe(1);
        expect(await metric(c, 'dnswarden_fleet_token_checks_total', { result: 'unchecked' })).toBe(0);
        expect((await ask(c, '127.0.3.44')).rcode).toBe('REFUSED'); // nothing was registered
      } finally {
        redis.resume();
      }
      expect(refused.status, refused.text).toBe(503);
      expect(refused.json.error.code).toBe('ERR_FLEET_UNAVAILABLE');
      await within(20_000, 'E reconnected', async () => (await metric(c, 'dnswarden_fleet_redis_connected')) === 1);
      expect((await post(c, jwt)).status).toBe(201); // the same token: it was never used
      expect(answered(await ask(c, '127.0.3.44'))).toBe(true);
      expect((await admin(c, '/v1/sessions/pod-c', { method: 'DELETE' })).status).toBe(204);
    } finally {
      await kill9(c);
      replicas.delete('E');
    }
  }, 90_000);

  it('a replica that could not know (down when the session was ended, Redis away when the token is replayed) accepts it, then ends the session once Redis is back', async () => {
    const a = rep('A');
    const jwt = await token('pod-w', ['127.0.3.43/32'], 'w-1');
    expect((await post(a, jwt)).status).toBe(201);
    await within(5000, 'pod-w on B', async () => answered(await ask(rep('B'), '127.0.3.43')));
    const bDir = rep('B').dir;
    await kill9(rep('B'));
    expect((await admin(a, '/v1/sessions/pod-w', { method: 'DELETE' })).status).toBe(204);
    // The end is in Redis (A's queue drained) before Redis stops answering.
    await within(5000, 'the end of pod-w sent by A', async () => (await metric(a, 'dnswarden_fleet_outbox_events')) === 0);
    redis.pause();
    let b: Replica;
    try {
      b = await launch('B', bDir); // waits for Redis (5 s), then starts from its own store: pod-w live there
      expect(answered(await ask(b, '127.0.3.43'))).toBe(true);
      const replay = await post(b, jwt);
      expect(replay.status, replay.text).toBe(201); // fail-open: nothing here says it was ended
      expect(await metric(b, 'dnswarden_fleet_token_checks_total', { result: 'unchecked' })).toBe(1);
    } finally {
      redis.resume();
    }
    await within(20_000, 'the replayed session ended on B', async () => (await ask(b, '127.0.3.43')).rcode === 'REFUSED');
    expect(await metric(b, 'dnswarden_fleet_token_checks_total', { result: 'replayed' })).toBe(1);
    const line = await waitLine(b, 'a registration accepted while Redis was away used the token of a session ended before (a replay): the session is ended', 0, 5000);
    expect(line['session']).toBe('pod-w');
    expect((await ask(a, '127.0.3.43')).rcode).toBe('REFUSED');
    for (const r of [a, b]) expect((await post(r, jwt)).status).toBe(401);
  }, 90_000);
});

describe('fleet.redis: a renewal gives back what it claimed when refused, and what it left out', () => {
  it('a renewal the store refuses after the claim leaves its new address free and its old one claimed; a renewal without an address frees it', async () => {
    const [a, b] = [rep('A'), rep('B')];
    const client = new Redis(redis.url);
    try {
      const holder = (address: string) => client.get(`{${FLEET}}:addr:${address}`);
      expect((await post(a, await token('pod-x', ['127.0.3.50/32'], 'x-1'))).status).toBe(201);
      expect(await holder('127.0.3.50/32')).toBe('pod-x');
      // A writer holding A's store: A's next write waits for it (busy_timeout), then fails.
      const lock = new Database(join(a.dir, 'data', 'dnswarden.sqlite'));
      let refused: { status: number; text: string };
      try {
        lock.pragma('busy_timeout = 5000');
        lock.exec('BEGIN IMMEDIATE');
        refused = await post(a, await token('pod-x', ['127.0.3.50/32', '127.0.3.51/32'], 'x-2'));
      } finally {
        if (lock.inTransaction) lock.exec('ROLLBACK');
        lock.close();
      }
      expect(refused.status, refused.text).toBeGreaterThanOrEqual(500);
      let held: string | null = null;
      await within(5000, 'the new address given back', async () => (held = await holder('127.0.3.51/32')) === null, () => held);
      expect(await holder('127.0.3.50/32')).toBe('pod-x');
      expect((await admin(a, '/v1/sessions/pod-x')).json.session.addresses).toEqual(['127.0.3.50/32']);
      // The address the refused renewal wanted is anyone's: registered through B at once.
      expect((await post(b, await token('pod-y', ['127.0.3.51/32'], 'y-1'))).status).toBe(201);

      // A renewal that moves to another address gives the old one back at once (not when the session expires).
      expect((await post(a, await token('pod-x', ['127.0.3.52/32'], 'x-3'))).status).toBe(201);
      await within(5000, 'the renewal on B', async () => answered(await ask(b, '127.0.3.52')));
      expect(await holder('127.0.3.50/32')).toBeNull();
      expect((await post(b, await token('pod-z', ['127.0.3.50/32'], 'z-1'))).status).toBe(201);
      for (const id of ['pod-x', 'pod-y', 'pod-z']) expect((await admin(b, `/v1/sessions/${id}`, { method: 'DELETE' })).status).toBe(204);
    } finally {
      client.disconnect();
    }
  }, 60_000);
});

describe('fleet.redis: a session from another replica never shadows a static session here', () => {
  it('registered on B with an address of A\'s static session: A keeps that address for its static session (counted, logged), adopts the rest', async () => {
    const [a, b] = [rep('A'), rep('B')];
    const from = a.output.length;
    const refusedBefore = (await metric(a, 'dnswarden_fleet_adoptions_refused_total')) ?? 0;
    expect((await post(b, await token('pod-s', ['127.0.3.30/32', '127.0.3.60/32'], 's-1'))).status).toBe(201);
    await within(5000, 'pod-s on A', async () => answered(await ask(a, '127.0.3.60')));
    expect((await admin(b, '/v1/sessions/pod-s')).json.session.addresses).toEqual(['127.0.3.30/32', '127.0.3.60/32']);
    expect((await admin(a, '/v1/sessions/pod-s')).json.session.addresses).toEqual(['127.0.3.60/32']);
    expect(await metric(a, 'dnswarden_fleet_adoptions_refused_total')).toBe(refusedBefore + 1);
    const line = await waitLine(a, "a session registered on another replica overlaps a static session here: those addresses stay the static session's on this replica", from, 5000);
    expect(line['session']).toBe('pod-s');
    expect(line['refused']).toEqual([{ address: '127.0.3.30/32', staticId: 'static-a' }]);
    // A query from the static address on A is the static session's.
    expect((await ask(a, '127.0.3.30', 'probe-static.dnswarden.test')).rcode).toBe('NXDOMAIN');
    const names = async (id: string): Promise<string[]> => ((await admin(a, `/v1/sessions/${id}/queries`)).json?.queries ?? []).map((q: { name: string }) => q.name);
    await within(5000, 'the query in static-a\'s history', async () => (await names('static-a')).includes('probe-static.dnswarden.test'));
    expect(await names('pod-s')).not.toContain('probe-static.dnswarden.test');
    // A renewal only inside the static address is not adopted on A at all (and pod-s's old addresses go with it).
    expect((await post(b, await token('pod-s', ['127.0.3.30/32'], 's-2'))).status).toBe(201);
    await within(5000, 'pod-s gone from A', async () => (await admin(a, '/v1/sessions/pod-s')).status === 404);
    expect((await ask(a, '127.0.3.60')).rcode).toBe('REFUSED');
    expect(answered(await ask(a, '127.0.3.30'))).toBe(true);
    expect(await metric(a, 'dnswarden_fleet_adoptions_refused_total')).toBe(refusedBefore + 2);
    expect((await admin(b, '/v1/sessions/pod-s', { method: 'DELETE' })).status).toBe(204);
  }, 60_000);
});
