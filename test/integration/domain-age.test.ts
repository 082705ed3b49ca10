// DomainAges against real servers on 127.0.0.1: an RDAP HTTP server and a WHOIS TCP server from
// test/helpers serving fixture answers, a slow one, errors and garbage. Never a public address:
// every TLD used here is routed to loopback by config (or by a loopback-only bootstrap file).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { DomainAges, type AgeResult, type AgeSource } from '../../src/domain-age/ages.js';
import { domainAgeSchema } from '../../src/domain-age/schema.js';
import { startRdapServer, type RdapServer } from '../helpers/rdap-server.js';
import { startWhoisServer, type WhoisServer } from '../helpers/whois-server.js';

const T0 = Date.parse('2026-01-15T12:00:00Z');
const SLOW_MS = 400;

let rdap: RdapServer;
let whois: WhoisServer;
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};

beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  rdap = await startRdapServer({ slowMs: SLOW_MS });
  whois = await startWhoisServer({ slowMs: SLOW_MS });
});

afterAll(async () => {
  await rdap.close();
  await whois.close();
  process.off('unhandledRejection', onUnhandled);
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'dnswarden-age-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A DomainAges with .com on the loopback RDAP server and .io on the loopback WHOIS server. */
function start(extra: { rdap?: Record<string, unknown>; whois?: Record<string, unknown>; [key: string]: unknown } = {}, db?: Database.Database) {
  const counted: Array<`${AgeSource}/${AgeResult}`> = [];
  const { rdap: rdapExtra, whois: whoisExtra, ...rest } = extra;
  const config = domainAgeSchema.parse({
    enabled: true,
    budget_ms: 2000,
    ...rest,
    rdap: { servers: { com: rdap.url }, ...rdapExtra },
    whois: { servers: { io: whois.address }, ...whoisExtra },
  });
  const ages = new DomainAges(config, {
    nowMs: () => T0,
    countLookup: (source, result) => counted.push(`${source}/${result}`),
    ...(db === undefined ? {} : { db }),
  });
  onTestFinished(() => ages.close());
  return { ages, counted };
}

/** Polls `peek` (bounded: at most `limitMs`) until the background lookup has filled the cache. */
async function settled(ages: DomainAges, domain: string, limitMs = 3000): Promise<number | undefined> {
  const until = Date.now() + limitMs;
  while (Date.now() < until) {
    if (ages.stats().inFlight === 0) return ages.peek(domain);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`${domain}: still in flight after ${limitMs} ms`);
}

describe('RDAP', () => {
  it('reads the registration date of an old and a young .com', async () => {
    const { ages, counted } = start();
    expect(await ages.lookup('example.com')).toBe(11112); // registered 1995-08-14T04:00Z
    expect(await ages.lookupAge('new-sync-cdn.com')).toEqual({ days: 3, createdMs: Date.parse('2026-01-12T09:30:00Z'), source: 'rdap' });
    expect(counted).toEqual(['rdap/ok', 'rdap/ok']);
  });

  it('asks the registry once for 20 concurrent lookups of one domain, then answers from memory', async () => {
    const { ages, counted } = start();
    const before = rdap.requests.get('slow1.com') ?? 0;
    const answers = await Promise.all(Array.from({ length: 20 }, () => ages.lookup('slow1.com')));
    expect(answers).toEqual(Array(20).fill(2147));
    expect(await ages.lookup('slow1.com')).toBe(2147);
    expect((rdap.requests.get('slow1.com') ?? 0) - before).toBe(1);
    expect(counted).toEqual(['rdap/ok', 'cache/ok']);
  });

  it('returns unknown when the budget runs out, and fills the cache in the background', async () => {
    const { ages, counted } = start();
    const startedMs = performance.now();
    expect(await ages.lookup('slow.com', 50)).toBeUndefined();
    const waitedMs = performance.now() - startedMs;
    expect(waitedMs).toBeGreaterThanOrEqual(45);
    expect(waitedMs).toBeLessThan(SLOW_MS - 100);
    expect(ages.stats()).toMatchObject({ budgetExceeded: 1, inFlight: 1 });
    expect(await settled(ages, 'slow.com')).toBe(2147);
    expect(await ages.lookup('slow.com', 50)).toBe(2147);
    expect(counted).toEqual(['rdap/ok', 'cache/ok']);
  });

  it.each([
    ['broken.com', 'rdap/error'], // HTTP 500 with an RFC 9083 error body
    ['garbage.com', 'rdap/error'], // 200 with HTML and binary bytes
    ['future.com', 'rdap/error'], // registered in 2031: implausible
    ['ancient.com', 'rdap/error'], // 1970: before 1985, a parsing accident
    ['nodate.com', 'rdap/not_found'], // a domain object without a registration event
    ['never-registered.com', 'rdap/not_found'], // 404
  ] as const)('%s → unknown (%s), cached as a negative answer', async (domain, expected) => {
    const { ages, counted } = start();
    expect(await ages.lookup(domain)).toBeUndefined();
    const requests = rdap.requests.get(domain);
    expect(await ages.lookup(domain)).toBeUndefined();
    expect(rdap.requests.get(domain)).toBe(requests); // no second request within negative_ttl_sec
    const fallback = expected === 'rdap/error' ? ['first_seen/not_found'] : [];
    const cached = expected === 'rdap/error' ? 'cache/error' : 'cache/not_found';
    expect(counted).toEqual([expected, ...fallback, cached]);
  });

  it('refuses a response larger than max_response_bytes', async () => {
    const { ages, counted } = start({ rdap: { max_response_bytes: 64 * 1024 } });
    expect(await ages.lookup('huge.com')).toBeUndefined();
    expect(counted[0]).toBe('rdap/error');
  });

  it('gives up at rdap.timeout_ms even when the budget is longer', async () => {
    const { ages, counted } = start({ rdap: { timeout_ms: 100 } });
    const startedMs = performance.now();
    expect(await ages.lookup('slow2.com', 2000)).toBeUndefined();
    expect(performance.now() - startedMs).toBeLessThan(SLOW_MS);
    expect(counted[0]).toBe('rdap/timeout');
  });

  it('caps concurrent registry queries at max_concurrent and sheds beyond max_queued', async () => {
    const { ages } = start({ max_concurrent: 2, max_queued: 2 });
    const before = rdap.maxActive;
    expect(before).toBeLessThanOrEqual(1); // earlier tests in this file query one domain at a time or deduplicate
    const names = ['slow1.com', 'slow2.com', 'slow3.com', 'slow4.com', 'slow5.com'];
    for (const name of names) expect(await ages.lookup(name, 0)).toBeUndefined();
    expect(ages.stats()).toMatchObject({ queued: 2, overloaded: 1 });
    await settled(ages, 'slow4.com', 5000);
    expect(rdap.maxActive).toBe(2);
    expect(names.map((n) => ages.peek(n))).toEqual([2147, 2147, 2147, 2147, undefined]);
  });
});

describe('WHOIS (TLDs without RDAP)', () => {
  it('reads the creation date from a loopback WHOIS server', async () => {
    const { ages, counted } = start();
    expect(await ages.lookupAge('example.io')).toEqual({ days: 4243, createdMs: Date.parse('2014-06-03T19:02:51Z'), source: 'whois' });
    expect(await ages.lookup('fresh.io')).toBe(0); // 13 h old
    expect(whois.queries.get('example.io')).toBe(1);
    expect(counted).toEqual(['whois/ok', 'whois/ok']);
  });

  it.each([
    ['unregistered.io', ['whois/not_found']],
    ['reset.io', ['whois/error', 'first_seen/not_found']], // connection reset
    ['garbage.io', ['whois/error', 'first_seen/not_found']], // binary bytes
    ['weird-date.io', ['whois/error', 'first_seen/not_found']], // "Creation Date: last Tuesday, probably"
  ] as const)('%s → unknown (%j)', async (domain, expected) => {
    const { ages, counted } = start();
    expect(await ages.lookup(domain)).toBeUndefined();
    expect(counted).toEqual(expected);
  });

  it('bounds the whole WHOIS lookup, which whoiser alone does not (a trickling server)', async () => {
    const { ages, counted } = start({ whois: { timeout_ms: 200 } });
    const startedMs = performance.now();
    expect(await ages.lookup('trickle.io', 5000)).toBeUndefined();
    const tookMs = performance.now() - startedMs;
    expect(tookMs).toBeGreaterThanOrEqual(190);
    expect(tookMs).toBeLessThan(1500);
    expect(counted).toEqual(['whois/timeout', 'first_seen/not_found']);
  });
});

describe('persistence, bootstrap and shutdown', () => {
  it('does not ask the registry again after a restart (SQLite store)', async () => {
    const path = join(tempDir(), 'warden.db');
    const db1 = new Database(path);
    db1.pragma('journal_mode = WAL');
    const first = start({}, db1);
    expect(await first.ages.lookup('new-sync-cdn.com')).toBe(3);
    expect(await first.ages.lookup('unregistered.io')).toBeUndefined();
    await first.ages.close();
    db1.close();
    const rdapBefore = rdap.requests.get('new-sync-cdn.com');
    const whoisBefore = whois.queries.get('unregistered.io');

    const db2 = new Database(path);
    onTestFinished(() => {
      db2.close();
    });
    const second = start({}, db2);
    expect(await second.ages.lookupAge('new-sync-cdn.com')).toEqual({ days: 3, createdMs: Date.parse('2026-01-12T09:30:00Z'), source: 'rdap' });
    expect(await second.ages.lookup('unregistered.io')).toBeUndefined();
    expect(rdap.requests.get('new-sync-cdn.com')).toBe(rdapBefore);
    expect(whois.queries.get('unregistered.io')).toBe(whoisBefore);
    expect(second.counted).toEqual(['store/ok', 'store/not_found']);
  });

  it('routes by a bootstrap file, refreshes it from a URL, and keeps the refreshed copy', async () => {
    const dir = tempDir();
    const bootstrapFile = join(dir, 'dns.json');
    writeFileSync(bootstrapFile, JSON.stringify({ publication: '2026-01-01T00:00:00Z', services: [[['org'], [rdap.url]]] }));
    rdap.bootstrap = { publication: '2026-01-14T00:00:00Z', services: [[['com', 'org'], [rdap.url]]] };
    const db = new Database(':memory:');
    onTestFinished(() => {
      db.close();
    });
    const settings = { rdap: { servers: {}, bootstrap_file: bootstrapFile, bootstrap_url: `${rdap.url}bootstrap.json` }, whois: { enabled: false } };
    const { ages } = start(settings, db);
    // The refresh started by the constructor has not finished yet; refreshBootstrap() joins it.
    expect(await ages.refreshBootstrap()).toBe(true);
    expect(ages.stats()).toMatchObject({ bootstrapTlds: 2, bootstrapPublication: '2026-01-14T00:00:00Z' });
    expect(await ages.lookup('example.com')).toBe(11112);
    await ages.close();

    rdap.bootstrap = undefined; // the URL now serves "{}": a failed refresh must keep the stored copy
    const again = start(settings, db);
    expect(await again.ages.refreshBootstrap()).toBe(false);
    expect(again.ages.stats()).toMatchObject({ bootstrapTlds: 2, bootstrapPublication: '2026-01-14T00:00:00Z' });
  });

  it('close() cancels lookups in flight promptly and leaves no unhandled rejection', async () => {
    const { ages } = start({ rdap: { timeout_ms: 10_000 }, whois: { timeout_ms: 10_000 } });
    expect(await ages.lookup('slow3.com', 0)).toBeUndefined();
    expect(await ages.lookup('trickle.io', 0)).toBeUndefined();
    expect(ages.stats().inFlight).toBe(2);
    const startedMs = performance.now();
    await ages.close();
    expect(performance.now() - startedMs).toBeLessThan(SLOW_MS);
    expect(ages.stats().inFlight).toBe(0);
    expect(ages.peek('slow3.com')).toBeUndefined(); // a cancelled answer is not cached
    expect(await ages.lookup('example.com')).toBeUndefined();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(unhandled).toEqual([]);
  });
});
