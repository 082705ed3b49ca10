// src/fleet/shared-record.ts against a real redis-server: the address claims (one winner, all or nothing,
// given back only by their holder, gone with the session's expiry) and the writes (a quarantine record never
// goes back a state; every change is published with its origin; a learned deny entry is written and published
// only if it is not older than what the record holds for its domain; a registration token is refused once its
// session was ended at or after its first use, and only then).
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SharedRecord, type FleetEvent } from '../../src/fleet/shared-record.js';
import type { SessionMeta } from '../../src/sessions/directory.js';
import type { QuarantineRecord } from '../../src/store.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

let redis: RedisServer;
let client: Redis;
let record: SharedRecord;
const key = (suffix: string) => `{unit}:${suffix}`;
let now = 1_000_000;

const meta = (id: string, addresses: string[], ttlMs = 60_000): SessionMeta => ({
  id, user: 'u', role: 'r', type: 'batch', addresses, origin: 'registered', expiresAtMs: now + ttlMs, registeredAtMs: now,
});

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url, { lazyConnect: true });
  await client.connect();
  record = new SharedRecord(client, key, 'node-1', () => now, pino({ level: 'silent' }));
});

afterAll(async () => {
  client?.disconnect();
  await redis?.stop();
});

describe('SharedRecord', () => {
  it('claims all of a session\'s addresses or none: a second session sharing one gets the holder and claims nothing', async () => {
    expect(await record.claim(meta('s1', ['10.0.0.1/32', '10.0.0.2/32']))).toBeUndefined();
    expect(await record.claim(meta('s2', ['10.0.0.2/32', '10.0.0.3/32']))).toBe('s1');
    expect(await client.get(key('addr:10.0.0.3/32'))).toBeNull(); // nothing half-claimed
    expect(await record.claim(meta('s3', ['10.0.0.3/32']))).toBeUndefined();
    // The holder renews its own claim.
    expect(await record.claim(meta('s1', ['10.0.0.1/32', '10.0.0.2/32']))).toBeUndefined();
    // The same address written differently is the same key (an address without a prefix, IPv6 zero compression).
    expect(await record.claim(meta('s4', ['10.0.0.1']))).toBe('s1');
    expect(await record.claim(meta('s5', ['fd00::1/128']))).toBeUndefined();
    expect(await record.claim(meta('s6', ['fd00:0:0::1/128']))).toBe('s5');
  });

  it('a claim is given back only by its holder, and lapses with the session', async () => {
    await record.unclaim({ id: 's2', addresses: ['10.0.0.2/32'] });
    expect(await record.claim(meta('s2', ['10.0.0.2/32']))).toBe('s1');
    await record.unclaim({ id: 's1', addresses: ['10.0.0.1/32', '10.0.0.2/32'] });
    expect(await record.claim(meta('s2', ['10.0.0.2/32']))).toBeUndefined();
    expect(await record.claim(meta('brief', ['10.0.0.9/32'], 300))).toBeUndefined();
    const deadline = Date.now() + 10_000;
    while ((await client.get(key('addr:10.0.0.9/32'))) !== null && Date.now() < deadline) await new Promise((ok) => setTimeout(ok, 50));
    expect(await record.claim(meta('next', ['10.0.0.9/32']))).toBeUndefined();
  });

  it('a quarantine record never goes back a state in the shared record, whatever order the writes come in', async () => {
    const q = { id: 'qr-1', sessionId: 's1', session: meta('s1', ['10.0.0.1/32']), state: 'open', raisedAtMs: now, evidence: {} } as QuarantineRecord;
    await record.send({ kind: 'quarantine.record', record: { ...q, state: 'released', decidedAtMs: now + 2 } });
    await record.send({ kind: 'quarantine.record', record: q });
    await record.send({ kind: 'quarantine.record', record: { ...q, state: 'confirmed', decidedAtMs: now + 1 } });
    expect(JSON.parse((await client.hget(key('quarantines'), 'qr-1'))!).state).toBe('released');
    await record.send({ kind: 'quarantine.record', record: { ...q, id: 'qr-2', state: 'confirmed' } });
    expect(JSON.parse((await client.hget(key('quarantines'), 'qr-2'))!).state).toBe('confirmed');
  });

  it('every change is published with its origin; a session\'s end gives its claims back', async () => {
    const sub = new Redis(redis.url);
    const got: { o: string; e: FleetEvent }[] = [];
    sub.on('message', (_c: string, text: string) => got.push(JSON.parse(text) as { o: string; e: FleetEvent }));
    await sub.subscribe(key('events'));
    try {
      const m = meta('s7', ['10.0.0.7/32']);
      await record.send({ kind: 'session.put', meta: m });
      expect(await client.get(key('addr:10.0.0.7/32'))).toBe('s7');
      expect(JSON.parse((await client.hget(key('sessions'), 's7'))!).id).toBe('s7');
      await record.send({ kind: 'session.drop', id: 's7' });
      expect(await client.get(key('addr:10.0.0.7/32'))).toBeNull();
      expect(await client.hget(key('sessions'), 's7')).toBeNull();
      const deadline = Date.now() + 5000;
      while (got.length < 2 && Date.now() < deadline) await new Promise((ok) => setTimeout(ok, 20));
      expect(got.map((g) => [g.o, g.e.kind])).toEqual([['node-1', 'session.put'], ['node-1', 'session.drop']]);
    } finally {
      sub.disconnect();
    }
  });

  it('a learned deny entry: the later add or removal wins per domain, an add wins a tie, and only a change is published', async () => {
    const sub = new Redis(redis.url);
    const got: FleetEvent[] = [];
    sub.on('message', (_c: string, text: string) => got.push((JSON.parse(text) as { e: FleetEvent }).e));
    await sub.subscribe(key('events'));
    try {
      const entry = (domain: string, addedAtMs: number) => ({ domain, addedAtMs, addedBy: 'analyst', quarantineId: null, reason: 'r' });
      const stored = async (domain: string) => JSON.parse((await client.hget(key('deny-entries'), domain))!) as { addedAtMs?: number; removedAtMs?: number };
      await record.send({ kind: 'deny.put', entry: entry('x.test', 100) });
      await record.send({ kind: 'deny.drop', domain: 'x.test', atMs: 100 }); // a tie: the add stays
      expect(await stored('x.test')).toMatchObject({ addedAtMs: 100 });
      await record.send({ kind: 'deny.drop', domain: 'x.test', atMs: 101 });
      expect(await stored('x.test')).toEqual({ domain: 'x.test', removedAtMs: 101 });
      await record.send({ kind: 'deny.put', entry: entry('x.test', 99) }); // older than the removal: stays removed
      expect(await stored('x.test')).toEqual({ domain: 'x.test', removedAtMs: 101 });
      await record.send({ kind: 'deny.put', entry: entry('x.test', 101) }); // added again at the removal's instant
      expect(await stored('x.test')).toMatchObject({ addedAtMs: 101 });
      // Another domain is not touched by any of it; an old snapshot is sent as one add per entry.
      await record.send({ kind: 'deny.list', entries: [entry('y.test', 5), entry('x.test', 50)] });
      expect(await stored('y.test')).toMatchObject({ addedAtMs: 5 });
      expect(await stored('x.test')).toMatchObject({ addedAtMs: 101 });
      const deadline = Date.now() + 5000;
      while (got.length < 4 && Date.now() < deadline) await new Promise((ok) => setTimeout(ok, 20));
      await new Promise((ok) => setTimeout(ok, 200)); // nothing more arrives: the refused writes were not published
      expect(got.map((e) => (e.kind === 'deny.put' ? `put ${e.entry.domain} ${e.entry.addedAtMs}` : e.kind === 'deny.drop' ? `drop ${e.domain} ${e.atMs}` : e.kind))).toEqual([
        'put x.test 100', 'drop x.test 101', 'put x.test 101', 'put y.test 5',
      ]);
    } finally {
      sub.disconnect();
    }
  });

  it('a token is refused once its session was ended at or after its first use; a new token for the session is not; both records lapse', async () => {
    const t1 = { id: '["k","s9","jti","1"]', expiresAtMs: now + 3_600_000 };
    const t2 = { id: '["k","s9","jti","2"]', expiresAtMs: now + 7_200_000 };
    expect(await record.useToken(t1, 's9', now)).toBeUndefined();
    expect(await record.useToken(t1, 's9', now + 5)).toBeUndefined(); // posted again while live (a renewal)
    await record.send({ kind: 'session.drop', id: 's9', endedAtMs: now + 10 });
    expect(await record.useToken(t1, 's9', now + 20)).toBe(now + 10); // its first use (now) was before the end
    expect(await record.useToken(t2, 's9', now + 30)).toBeUndefined(); // first used after the end
    // An expiry (no endedAtMs) revokes nothing; a later end revokes the new token too.
    await record.send({ kind: 'session.drop', id: 's9' });
    expect(await record.useToken(t2, 's9', now + 40)).toBeUndefined();
    await record.send({ kind: 'session.drop', id: 's9', endedAtMs: now + 50 });
    expect(await record.useToken(t2, 's9', now + 60)).toBe(now + 50);
    // The records lapse: the token's with its expiry, the end's with the latest token of the session (a day at least).
    const keys = (await client.keys('{unit}:*')).filter((k) => /:(token|ended|tokens-until):/.test(k));
    expect(keys.length).toBe(4);
    for (const k of keys) expect(await client.pttl(k)).toBeGreaterThan(0);
    expect(await client.pttl(key('ended:s9'))).toBeGreaterThan(86_000_000);
    // The token's id is not in Redis as such (a hash of it is).
    expect(keys.some((k) => k.includes('jti'))).toBe(false);
  });
});
