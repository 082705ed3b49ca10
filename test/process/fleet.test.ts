// fleet.redis, as users run it: a real redis-server and three `dnswarden serve` processes (the built CLI,
// each with its own store and ports), a real NSD upstream, clients on loopback addresses. Checks what a
// fleet promises (README, "Running a fleet"):
// - a quarantine raised on one replica holds on every other within 1 s; its evidence is readable from any
//   replica; a release through another replica lifts it everywhere within 1 s;
// - a registration and its end through any replica hold everywhere within 1 s; static sessions stay per
//   config; one address claimed through two replicas at once has one winner (201) and one 409;
// - the learned deny list and the audit log are fleet-wide;
// - a burst of cache hits sends no Redis command;
// - Redis killed: every replica keeps answering, /healthz stays 200, the metrics show it; a quarantine
//   raised meanwhile holds at once where it was raised, is queued on disk (it survives kill -9 of that
//   replica) and reaches the others when Redis is back (empty: the replicas write back what they hold);
// - a replica started later has caught up (gates, sessions, deny list) when it says it is ready;
// - alerts are posted by one replica (the lease holder) exactly once; kill -9 it and another takes over.
import type { ChildProcess } from 'node:child_process';
import { createServer, type Server as HttpServer } from 'node:http';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest, exited, spawnServe, waitLogLine, type AdminReply } from '../helpers/serve-process.js';
import { query, type DnsReply, type Server } from '../helpers/dns-client.js';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { metricValue } from '../helpers/warden.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { base32Label } from '../helpers/exfil.js';

const TOKEN = 'fleet-test-admin-token-0123456789';
const HS_SECRET = 'fleet-test-registration-secret-0123456789';
// The spec: a change is in force on every replica within 1 s. Measured from the answer (or API reply) that made it.
const PROPAGATION_MS = 1000;
const exfil = (seed: string, i: number, domain = 'dnswarden.test'): string => `${base32Label(`${seed}-${i}`)}.${'abcdefgh'[i]}.exfil.${domain}`;
// What the confirmation test denies fleet-wide (not the upstream fixture's domain, which later tests still resolve).
const SINK = 'exfil-sink.test';

interface Replica {
  readonly name: string;
  readonly dir: string;
  readonly configPath: string;
  child: ChildProcess;
  output: string;
  dns: Server;
  adminUrl: string;
}

let upstream: Upstream;
let redis: RedisServer;
let root: string;
let hook: HttpServer;
const hookBodies: { id: string; type: string }[] = [];
const replicas = new Map<string, Replica>();

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

function configOf(name: string, dir: string, fleet: Record<string, unknown> = { name: 'fleettest', redis: { url: redis.url } }, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    ...extra,
    listen: { dns: ['127.0.0.1:0'], admin: '127.0.0.1:0' },
    admin: { token: TOKEN },
    storage: { dir: join(dir, 'data') },
    upstreams: [{ address: upstream.hostPort }],
    sessions: {
      // Static sessions stay per replica: only A has "static-a".
      static: name === 'A' ? [{ id: 'static-a', addresses: ['127.0.0.30/32'], type: 'interactive', user: 'ops', role: 'dev' }] : [],
      signing_keys: [{ kid: 'runtime', alg: 'HS256', secret: HS_SECRET }],
    },
    alerts: { webhooks: [{ url: `http://127.0.0.1:${(hook.address() as { port: number }).port}/hook`, format: 'json' }], retry_initial_ms: 100, retry_max_ms: 500 },
    fleet,
    logging: { level: 'info' },
  };
}

const waitLine = (r: Replica, msg: string, from: number, timeoutMs = 30_000): Promise<Record<string, unknown>> =>
  waitLogLine(r.child, () => r.output, msg, { from, timeoutMs, pollMs: 20, label: `replica ${r.name}` });

async function launch(name: string, dir = mkdtempSync(join(root, `${name}-`)), fleet?: Record<string, unknown>, extra?: Record<string, unknown>): Promise<Replica> {
  const configPath = join(dir, 'dnswarden.yaml');
  writeFileSync(configPath, stringify(configOf(name, dir, fleet, extra)));
  const r: Replica = { name, dir, configPath, child: undefined as unknown as ChildProcess, output: '', dns: { address: '127.0.0.1', port: 0 }, adminUrl: '' };
  r.child = spawnServe(configPath, dir, (text) => void (r.output += text));
  const ready = await waitLine(r, 'dnswarden ready', 0);
  r.dns = { address: '127.0.0.1', port: Number((ready['dns'] as string[])[0]!.split(':')[1]) };
  r.adminUrl = ready['admin'] as string;
  replicas.set(name, r);
  return r;
}

function rep(name: string): Replica {
  return replicas.get(name)!;
}

const admin = (r: Replica, path: string, init: { method?: string; body?: unknown } = {}): Promise<AdminReply> => adminRequest(r.adminUrl, TOKEN, path, init);

async function metric(r: Replica, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  return metricValue((await admin(r, '/metrics')).text, name, labels);
}

const ask = (r: Replica, bind: string, name: string = FIXTURE.a.name, type = 'A'): Promise<DnsReply> => query({ server: r.dns, bind, name, type, transport: 'udp' });

/** Polls `check` until it holds; returns the time it took. Throws (with the last value) past `timeoutMs`. */
async function within(timeoutMs: number, what: string, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now();
  for (;;) {
    const at = Date.now() - start; // when the check that succeeds began: the state held by then
    if (await check()) return at;
    if (at > timeoutMs) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(20);
  }
}

const answered = (reply: DnsReply): boolean => reply.rcode === 'NOERROR' && reply.answers.some((a) => a.data === FIXTURE.a.address);
const quarantined = (reply: DnsReply): boolean => reply.rcode === 'NXDOMAIN' && reply.ede?.code === 15 && /^session quarantined \(qr-/.test(reply.ede.text);

async function token(sid: string, address: string, type = 'scheduled', user = `user-${sid}`): Promise<string> {
  return new SignJWT({ sid, user, role: 'agent', session_type: type, addresses: [`${address}/32`], exp: Math.floor(Date.now() / 1000) + 3600 })
    .setProtectedHeader({ alg: 'HS256', kid: 'runtime' })
    .sign(new TextEncoder().encode(HS_SECRET));
}

async function register(r: Replica, sid: string, address: string): Promise<{ status: number; json: any }> {
  return admin(r, '/v1/sessions', { method: 'POST', body: { token: await token(sid, address) } });
}

/** Two blocked exfiltration queries from a scheduled session: the second quarantines it (policy defaults). */
async function quarantineFrom(r: Replica, bind: string, seed: string, domain?: string): Promise<void> {
  expect((await ask(r, bind, exfil(seed, 0, domain), 'TXT')).ede?.text).toMatch(/^threshold:/);
  expect(quarantined(await ask(r, bind, exfil(seed, 1, domain), 'TXT'))).toBe(true);
}

async function kill9(r: Replica): Promise<void> {
  r.child.kill('SIGKILL');
  await exited(r.child, 10_000);
}

beforeAll(async () => {
  upstream = await startUpstream();
  redis = await startRedis();
  root = mkdtempSync(join(tmpdir(), 'dnswarden-fleet-'));
  hook = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => void (body += c.toString()));
    req.on('end', () => {
      try { hookBodies.push(JSON.parse(body) as { id: string; type: string }); } catch { /* not ours */ }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((ok) => hook.listen(0, '127.0.0.1', ok));
  await Promise.all(['A', 'B', 'C'].map((n) => launch(n)));
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
  await new Promise((ok) => hook?.close(ok));
  if (root !== undefined) rmSync(root, { recursive: true, force: true });
});

describe('fleet.redis: three replicas sharing one Redis', () => {
  it('every replica is connected, has nothing queued, and answers its own static sessions only', async () => {
    for (const r of replicas.values()) {
      await within(10_000, `${r.name} connected`, async () => (await metric(r, 'dnswarden_fleet_redis_connected')) === 1);
      expect(await metric(r, 'dnswarden_fleet_outbox_events')).toBe(0);
    }
    expect(answered(await ask(rep('A'), '127.0.0.30'))).toBe(true);
    expect((await ask(rep('B'), '127.0.0.30')).rcode).toBe('REFUSED');
  });

  it('a registration through one replica is in force on every replica within 1 s, and its end through another too', async () => {
    for (const r of replicas.values()) expect((await ask(r, '127.0.0.20')).rcode).toBe('REFUSED');
    const reg = await register(rep('B'), 'pod-r', '127.0.0.20');
    expect(reg.status).toBe(201);
    for (const name of ['A', 'C']) {
      const took = await within(PROPAGATION_MS, `registration on ${name}`, async () => answered(await ask(rep(name), '127.0.0.20')));
      expect(took).toBeLessThanOrEqual(PROPAGATION_MS);
    }
    expect((await admin(rep('C'), '/v1/sessions/pod-r')).json.session.user).toBe('user-pod-r');
    expect((await admin(rep('C'), '/v1/sessions/pod-r', { method: 'DELETE' })).status).toBe(204);
    for (const name of ['A', 'B']) {
      await within(PROPAGATION_MS, `end of registration on ${name}`, async () => (await ask(rep(name), '127.0.0.20')).rcode === 'REFUSED');
    }
  });

  it('one address claimed through two replicas at once: exactly one wins, the other gets 409', async () => {
    for (let round = 0; round < 3; round++) {
      const address = `127.0.0.${41 + round}`;
      const [ta, tb] = await Promise.all([token(`claim-a-${round}`, address), token(`claim-b-${round}`, address)]);
      const results = await Promise.all([
        admin(rep('A'), '/v1/sessions', { method: 'POST', body: { token: ta } }),
        admin(rep('B'), '/v1/sessions', { method: 'POST', body: { token: tb } }),
      ]);
      expect(results.map((r) => r.status).sort()).toEqual([201, 409]);
      const loser = results.find((r) => r.status === 409)!;
      expect(loser.json.error.code).toBe('ERR_SESSION_CONFLICT');
      const winner = results[0]!.status === 201 ? `claim-a-${round}` : `claim-b-${round}`;
      for (const r of replicas.values()) {
        await within(PROPAGATION_MS, `winner on ${r.name}`, async () => (await admin(r, `/v1/sessions/${winner}`)).status === 200);
        expect((await admin(r, '/v1/sessions')).json.sessions.filter((s: { addresses: string[] }) => s.addresses.includes(`${address}/32`)).map((s: { id: string }) => s.id)).toEqual([winner]);
      }
      expect((await admin(rep('C'), `/v1/sessions/${winner}`, { method: 'DELETE' })).status).toBe(204);
    }
    // The address is free again once its session ended (the claim went with it).
    expect((await register(rep('A'), 'claim-again', '127.0.0.41')).status).toBe(201);
    expect((await admin(rep('A'), '/v1/sessions/claim-again', { method: 'DELETE' })).status).toBe(204);
  });

  it('a quarantine raised on one replica holds on every other within 1 s; its evidence is readable anywhere; a release through another lifts it everywhere within 1 s', async () => {
    expect((await register(rep('A'), 'pod-q', '127.0.0.21')).status).toBe(201);
    for (const r of replicas.values()) await within(PROPAGATION_MS, `pod-q on ${r.name}`, async () => answered(await ask(r, '127.0.0.21')));
    await quarantineFrom(rep('A'), '127.0.0.21', 'q');
    // Enforced where it was raised before the blocking answer left (that answer said so); elsewhere within 1 s.
    for (const name of ['B', 'C']) {
      const took = await within(PROPAGATION_MS, `quarantine on ${name}`, async () => quarantined(await ask(rep(name), '127.0.0.21')));
      expect(took).toBeLessThanOrEqual(PROPAGATION_MS);
    }
    const open = await admin(rep('C'), '/v1/quarantines?state=open');
    const q = open.json.quarantines.find((x: { session: { id: string } }) => x.session.id === 'pod-q');
    expect(q).toBeDefined();
    const shown = await admin(rep('C'), `/v1/quarantines/${q.id}`);
    expect(shown.json.quarantine.evidence.recent.map((e: { name: string }) => e.name)).toContain(exfil('q', 0));
    expect(shown.json.quarantine.evidence.trigger.name).toBe(exfil('q', 1));
    expect((await admin(rep('B'), '/v1/sessions/pod-q')).json.session.quarantine).toBe(q.id);
    // The same user registering anew through another replica is held under it, on every replica.
    const again = await admin(rep('C'), '/v1/sessions', { method: 'POST', body: { token: await token('pod-q2', '127.0.0.27', 'scheduled', 'user-pod-q') } });
    expect(again.status).toBe(201);
    for (const name of ['A', 'B', 'C']) {
      await within(PROPAGATION_MS, `pod-q2 held on ${name}`, async () => quarantined(await ask(rep(name), '127.0.0.27')));
    }
    expect((await admin(rep('A'), `/v1/quarantines/${q.id}`)).json.quarantine.gated_sessions.map((g: { id: string }) => g.id)).toEqual(['pod-q2']);

    const release = await admin(rep('C'), `/v1/quarantines/${q.id}/release`, { method: 'POST', body: { reason: 'fleet test' } });
    expect(release.status).toBe(200);
    for (const name of ['A', 'B', 'C']) {
      const took = await within(PROPAGATION_MS, `release on ${name}`, async () => answered(await ask(rep(name), '127.0.0.21')));
      expect(took).toBeLessThanOrEqual(PROPAGATION_MS);
      await within(PROPAGATION_MS, `release of pod-q2 on ${name}`, async () => answered(await ask(rep(name), '127.0.0.27')));
    }
    for (const r of replicas.values()) {
      await within(PROPAGATION_MS, `released record on ${r.name}`, async () => (await admin(r, `/v1/quarantines/${q.id}`)).json.quarantine.state === 'released');
    }
  });

  it('a confirmation through one replica keeps the quarantine on every replica, and its learned deny entry and audit rows are fleet-wide', async () => {
    await quarantineFrom(rep('B'), '127.0.0.21', 'c', SINK);
    const q = (await admin(rep('B'), '/v1/sessions/pod-q')).json.session.quarantine as string;
    for (const r of replicas.values()) await within(PROPAGATION_MS, `quarantine on ${r.name}`, async () => (await admin(r, `/v1/quarantines/${q}`)).status === 200);
    const dry = await admin(rep('A'), `/v1/quarantines/${q}/confirm`, { method: 'POST', body: { reason: 'exfil', dry_run: true } });
    const domains = dry.json.deny_candidates as string[];
    expect(domains).toEqual([SINK]);
    const confirm = await admin(rep('A'), `/v1/quarantines/${q}/confirm`, { method: 'POST', body: { reason: 'exfil', deny_domains: domains } });
    expect(confirm.status).toBe(200);
    for (const r of replicas.values()) {
      await within(PROPAGATION_MS, `confirmed on ${r.name}`, async () => (await admin(r, `/v1/quarantines/${q}`)).json.quarantine.state === 'confirmed');
      expect(quarantined(await ask(r, '127.0.0.21'))).toBe(true);
      await within(PROPAGATION_MS, `deny list on ${r.name}`, async () => (await admin(r, '/v1/deny')).json.domains.map((d: { domain: string }) => d.domain).includes(SINK));
      const audit = (await admin(r, '/v1/audit')).json.audit as { action: string; target: string }[];
      expect(audit.filter((a) => a.action === 'quarantine.confirm' && a.target === q)).toHaveLength(1);
      expect(audit.filter((a) => a.action === 'deny.add' && a.target === SINK)).toHaveLength(1);
    }
    // A deny entry added through C blocks on A (a static session only A has).
    expect(answered(await ask(rep('A'), '127.0.0.30', FIXTURE.a.name))).toBe(true);
    expect((await admin(rep('C'), '/v1/deny', { method: 'POST', body: { domain: 'fleet-deny.test', reason: 'test' } })).status).toBe(201);
    await within(PROPAGATION_MS, 'learned deny on A', async () => (await ask(rep('A'), '127.0.0.30', 'www.fleet-deny.test')).ede?.text.startsWith('learned_deny') === true);
  });

  it('a burst of cache hits, and of judged queries, sends no Redis command (only the heartbeat runs meanwhile)', async () => {
    const a = rep('A');
    expect(answered(await ask(a, '127.0.0.30'))).toBe(true); // cached now
    const before = (await admin(a, '/metrics')).text;
    const started = Date.now();
    for (let i = 0; i < 300; i++) expect(answered(await ask(a, '127.0.0.30'))).toBe(true);
    const after = (await admin(a, '/metrics')).text;
    const seconds = (Date.now() - started) / 1000;
    expect(metricValue(after, 'dnswarden_cache_hits_total')! - metricValue(before, 'dnswarden_cache_hits_total')!).toBeGreaterThanOrEqual(300);
    for (const connection of ['main', 'sub']) {
      expect(metricValue(after, 'dnswarden_fleet_redis_commands_total', { connection })).toBe(metricValue(before, 'dnswarden_fleet_redis_commands_total', { connection }));
    }
    // Judged queries (cache misses, each scored and forwarded) send none either.
    const beforeMisses = (await admin(a, '/metrics')).text;
    for (let i = 0; i < 50; i++) expect((await ask(a, '127.0.0.30', `miss-${i}.nonexistent.dnswarden.test`)).rcode).toBe('NXDOMAIN');
    const afterMisses = (await admin(a, '/metrics')).text;
    expect(metricValue(afterMisses, 'dnswarden_cache_misses_total')! - metricValue(beforeMisses, 'dnswarden_cache_misses_total')!).toBeGreaterThanOrEqual(50);
    for (const connection of ['main', 'sub']) {
      expect(metricValue(afterMisses, 'dnswarden_fleet_redis_commands_total', { connection })).toBe(metricValue(beforeMisses, 'dnswarden_fleet_redis_commands_total', { connection }));
    }
    // The lease connection runs on its own clock (the 1 s heartbeat, and the holder posting queued alerts): a
    // handful of commands over the burst, never one per query (that would be 300 or more).
    const beats = metricValue(after, 'dnswarden_fleet_redis_commands_total', { connection: 'lease' })! - metricValue(before, 'dnswarden_fleet_redis_commands_total', { connection: 'lease' })!;
    expect(beats).toBeLessThan(30 + 5 * Math.ceil(seconds));
  });

  it('Redis killed: every replica keeps answering and stays live; a quarantine raised meanwhile holds at once where it was raised, is queued on disk (kept through kill -9), and reaches the others when Redis is back', async () => {
    expect((await register(rep('A'), 'pod-p', '127.0.0.22')).status).toBe(201);
    for (const r of replicas.values()) await within(PROPAGATION_MS, `pod-p on ${r.name}`, async () => answered(await ask(r, '127.0.0.22')));
    await redis.kill();
    for (const r of replicas.values()) {
      await within(10_000, `${r.name} sees Redis gone`, async () => (await metric(r, 'dnswarden_fleet_redis_connected')) === 0);
      expect((await fetch(`${r.adminUrl}/healthz`)).status).toBe(200);
      expect(answered(await ask(r, '127.0.0.22'))).toBe(true);
    }
    await quarantineFrom(rep('A'), '127.0.0.22', 'p');
    expect(quarantined(await ask(rep('A'), '127.0.0.22'))).toBe(true);
    expect(await metric(rep('A'), 'dnswarden_fleet_outbox_events')).toBeGreaterThanOrEqual(1);
    // Partitioned: the others cannot know yet.
    expect(answered(await ask(rep('B'), '127.0.0.22'))).toBe(true);

    // The queue is on disk: A killed with -9 and started again still has it.
    const a = rep('A');
    await kill9(a);
    const restarted = await launch('A', a.dir);
    expect(quarantined(await ask(restarted, '127.0.0.22'))).toBe(true);
    expect(await metric(restarted, 'dnswarden_fleet_outbox_events')).toBeGreaterThanOrEqual(1);

    await redis.restart(); // empty: nothing was saved
    for (const name of ['B', 'C']) await within(20_000, `quarantine reaches ${name}`, async () => quarantined(await ask(rep(name), '127.0.0.22')));
    for (const r of replicas.values()) {
      await within(20_000, `${r.name} reconnected and drained`, async () => (await metric(r, 'dnswarden_fleet_redis_connected')) === 1 && (await metric(r, 'dnswarden_fleet_outbox_events')) === 0);
    }
    expect(rep('A').output).toContain('Redis lost the shared record');
  });

  it('Redis stops answering with its connections open (SIGSTOP): noticed within seconds; a quarantine raised meanwhile does not wait for it, holds at once and reaches the others when Redis answers again', async () => {
    expect((await register(rep('B'), 'pod-s', '127.0.0.25')).status).toBe(201);
    for (const r of replicas.values()) await within(PROPAGATION_MS, `pod-s on ${r.name}`, async () => answered(await ask(r, '127.0.0.25')));
    redis.pause();
    try {
      for (const r of replicas.values()) {
        await within(15_000, `${r.name} sees Redis not answering`, async () => (await metric(r, 'dnswarden_fleet_redis_connected')) === 0);
        expect((await fetch(`${r.adminUrl}/healthz`)).status).toBe(200);
        expect(answered(await ask(r, '127.0.0.25'))).toBe(true);
      }
      const started = Date.now();
      await quarantineFrom(rep('B'), '127.0.0.25', 's');
      expect(Date.now() - started).toBeLessThan(1000); // two judged queries; nothing waited for Redis
      expect(await metric(rep('B'), 'dnswarden_fleet_outbox_events')).toBeGreaterThanOrEqual(1);
    } finally {
      redis.resume();
    }
    for (const name of ['A', 'C']) await within(20_000, `quarantine reaches ${name}`, async () => quarantined(await ask(rep(name), '127.0.0.25')));
    for (const r of replicas.values()) {
      await within(20_000, `${r.name} answering again and drained`, async () => (await metric(r, 'dnswarden_fleet_redis_connected')) === 1 && (await metric(r, 'dnswarden_fleet_outbox_events')) === 0);
    }
  });

  it('a replica started later has caught up (quarantine gates, sessions, learned deny list) when it says it is ready', async () => {
    expect((await register(rep('B'), 'pod-n', '127.0.0.23')).status).toBe(201);
    await within(PROPAGATION_MS, 'pod-n on C', async () => answered(await ask(rep('C'), '127.0.0.23')));
    const d = await launch('D');
    // The first queries, right after the ready line.
    expect(quarantined(await ask(d, '127.0.0.22'))).toBe(true); // raised during the outage, written back
    expect(quarantined(await ask(d, '127.0.0.21'))).toBe(true); // confirmed earlier
    expect(answered(await ask(d, '127.0.0.23'))).toBe(true);
    expect((await ask(d, '127.0.0.30')).rcode).toBe('REFUSED'); // A's static session is A's
    expect((await admin(d, '/v1/deny')).json.domains.map((x: { domain: string }) => x.domain).sort()).toEqual([SINK, 'fleet-deny.test']);
  });

  it('alerts are posted once for the whole fleet, by the lease holder; kill -9 it and another replica takes the lease and posts', async () => {
    const holders = async (): Promise<string[]> => {
      const out: string[] = [];
      for (const r of replicas.values()) if (r.child.exitCode === null && r.child.signalCode === null && (await metric(r, 'dnswarden_fleet_alert_lease')) === 1) out.push(r.name);
      return out;
    };
    await within(10_000, 'one lease holder', async () => (await holders()).length === 1);
    const [holder] = await holders();
    // A quarantine raised on a replica that does not hold the lease: posted once (by the holder).
    const raiser = [...replicas.values()].find((r) => r.name !== holder)!;
    const delivered = (r: Replica) => metric(r, 'dnswarden_alerts_delivered_total');
    const [raiserBefore, holderBefore] = [await delivered(raiser), await delivered(rep(holder!))];
    expect((await register(raiser, 'pod-l', '127.0.0.24')).status).toBe(201);
    await quarantineFrom(raiser, '127.0.0.24', 'l');
    const qid = (await admin(raiser, '/v1/sessions/pod-l')).json.session.quarantine as string;
    await within(10_000, 'alert posted', async () => hookBodies.some((b) => b.id === `${qid}:quarantine_raised`));
    await sleep(1500);
    expect(hookBodies.filter((b) => b.id === `${qid}:quarantine_raised`)).toHaveLength(1);
    // Posted by the holder, not by the replica that raised it.
    expect(await delivered(raiser)).toBe(raiserBefore);
    expect(await delivered(rep(holder!))).toBeGreaterThan(holderBefore!);
    expect(await metric(raiser, 'dnswarden_alerts_pending')).toBe(0);

    await kill9(rep(holder!));
    replicas.delete(holder!);
    await within(15_000, 'the lease moves', async () => (await holders()).length === 1);
    const [next] = await holders();
    expect(next).not.toBe(holder);
    const release = await admin(raiser, `/v1/quarantines/${qid}/release`, { method: 'POST', body: { reason: 'lease test' } });
    expect(release.status).toBe(200);
    await within(10_000, 'alert posted by the new holder', async () => hookBodies.some((b) => b.id === `${qid}:quarantine_released`));
    await sleep(1500);
    expect(hookBodies.filter((b) => b.id === `${qid}:quarantine_released`)).toHaveLength(1);
    // Nothing the whole test raised or decided was posted twice (the outage and restarts included).
    const ids = hookBodies.map((b) => b.id);
    expect(ids.filter((id, i) => ids.indexOf(id) !== i)).toEqual([]);
  });
});

describe('fleet.redis with server.workers: 2 (every worker a member of the fleet)', () => {
  // Steered by the kernel to worker 1 and worker 0 of a two-worker replica (test/process/workers.test.ts checks it).
  const ON_1 = '127.0.0.2';
  const ON_0 = '127.0.0.3';
  afterAll(async () => {
    const r = replicas.get('W2');
    if (r !== undefined && r.child.exitCode === null) { r.child.kill('SIGTERM'); await exited(r.child, 15_000).catch(() => r.child.kill('SIGKILL')); }
    replicas.delete('W2');
  });

  it('registrations made elsewhere hold on both workers; a quarantine raised by a worker reaches the fleet; a release elsewhere lifts it on the worker', async () => {
    const w2 = await launch('W2', undefined, undefined, { server: { workers: 2 } });
    // Any replica still running (the lease test killed one of them).
    const a = [...replicas.values()].find((r) => ['A', 'B', 'C', 'D'].includes(r.name))!;
    expect((await register(a, 'pod-w1', ON_1)).status).toBe(201);
    expect((await register(a, 'pod-w0', ON_0)).status).toBe(201);
    for (const address of [ON_1, ON_0]) await within(PROPAGATION_MS, `registration of ${address} on W2`, async () => answered(await ask(w2, address)));
    await quarantineFrom(w2, ON_1, 'w');
    await within(PROPAGATION_MS, `quarantine raised by worker 1 on ${a.name}`, async () => quarantined(await ask(a, ON_1)));
    const q = (await admin(a, '/v1/sessions/pod-w1')).json.session.quarantine as string;
    expect(q).toMatch(/^qr-/);
    expect(answered(await ask(w2, ON_0))).toBe(true); // the other session is not touched
    expect((await admin(a, `/v1/quarantines/${q}/release`, { method: 'POST', body: { reason: 'workers' } })).status).toBe(200);
    await within(PROPAGATION_MS, 'release on W2 (worker 1)', async () => answered(await ask(w2, ON_1)));
  });
});

describe('fleet.redis with a password (requirepass)', () => {
  let locked: RedisServer;
  beforeAll(async () => { locked = await startRedis(['--requirepass', 'fleet-test-redis-password']); });
  afterAll(async () => {
    for (const name of ['P', 'W']) {
      const r = replicas.get(name);
      if (r !== undefined && r.child.exitCode === null) { r.child.kill('SIGKILL'); await exited(r.child, 5000).catch(() => undefined); }
      replicas.delete(name);
    }
    await locked?.stop();
  });

  it('password_file gives the password: connected; a wrong one: not connected, DNS answered all the same; a missing file: the start fails naming the field', async () => {
    const good = join(root, 'redis-password');
    const bad = join(root, 'redis-password-wrong');
    writeFileSync(good, 'fleet-test-redis-password\n');
    writeFileSync(bad, 'not-the-password\n');
    const p = await launch('P', undefined, { name: 'locked', redis: { url: locked.url, password_file: good } });
    await within(10_000, 'P connected', async () => (await metric(p, 'dnswarden_fleet_redis_connected')) === 1);
    const w = await launch('W', undefined, { name: 'locked', redis: { url: locked.url, password_file: bad } });
    expect(await metric(w, 'dnswarden_fleet_redis_connected')).toBe(0);
    // A registration through P reaches neither W (no access) nor fails W's answering.
    expect((await register(p, 'pod-pw', '127.0.0.26')).status).toBe(201);
    expect((await ask(w, '127.0.0.26')).rcode).toBe('REFUSED');
    expect(w.output).not.toContain('not-the-password');
    expect(w.output).not.toContain('fleet-test-redis-password');

    const dir = mkdtempSync(join(root, 'M-'));
    const configPath = join(dir, 'dnswarden.yaml');
    writeFileSync(configPath, stringify(configOf('M', dir, { name: 'locked', redis: { url: locked.url, password_file: join(root, 'no-such-file') } })));
    let out = '';
    const m = spawnServe(configPath, dir, (text) => void (out += text));
    const { code } = await exited(m, 20_000);
    expect(code).not.toBe(0);
    expect(out).toContain('fleet.redis.password_file');
  });
});
