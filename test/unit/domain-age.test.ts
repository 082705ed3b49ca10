// DomainAges without any network (RDAP and WHOIS off): disabled mode, the offline feed, first
// sightings, negative caching and counting, on an injected clock and an in-memory SQLite.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it, onTestFinished } from 'vitest';
import { DomainAges, type AgeResult, type AgeSource } from '../../src/domain-age/ages.js';
import { domainAgeSchema } from '../../src/domain-age/schema.js';
import { ConfigError } from '../../src/errors.js';

const DAY_MS = 86_400_000;
const T0 = Date.parse('2026-01-15T12:00:00Z');

function offline(extra: Record<string, unknown> = {}, clock = { nowMs: T0 }, db?: Database.Database) {
  const counted: Array<`${AgeSource}/${AgeResult}`> = [];
  const config = domainAgeSchema.parse({ enabled: true, rdap: { enabled: false }, whois: { enabled: false }, ...extra });
  const ages = new DomainAges(config, {
    nowMs: () => clock.nowMs,
    countLookup: (source, result) => counted.push(`${source}/${result}`),
    ...(db === undefined ? {} : { db }),
  });
  onTestFinished(() => ages.close());
  return { ages, counted, clock };
}

function feedFile(lines: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'dnswarden-feed-'));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'nrd.csv');
  writeFileSync(path, lines);
  return path;
}

describe('DomainAges (no network)', () => {
  it('answers undefined at once and counts nothing when disabled', async () => {
    const counted: string[] = [];
    const ages = new DomainAges(domainAgeSchema.parse({ feed: { path: '/nonexistent/never-read.csv' } }), {
      nowMs: () => T0,
      countLookup: (s, r) => counted.push(`${s}/${r}`),
    });
    onTestFinished(() => ages.close());
    expect(await ages.lookup('example.com')).toBeUndefined();
    expect(ages.peek('example.com')).toBeUndefined();
    expect(counted).toEqual([]);
  });

  it('reads ages from the offline feed, then from memory', async () => {
    const { ages, counted } = offline({ feed: { path: feedFile('domain,created_date\nfresh-cdn-sync.com,2026-01-12\n') } });
    expect(await ages.lookup('fresh-cdn-sync.com')).toBe(3);
    expect(await ages.lookupAge('FRESH-CDN-SYNC.COM.')).toEqual({ days: 3, createdMs: Date.UTC(2026, 0, 12), source: 'feed' });
    expect(ages.peek('fresh-cdn-sync.com')).toBe(3);
    expect(counted).toEqual(['feed/ok', 'cache/ok']);
  });

  it('fails at start, naming the field, when the feed file is unreadable', () => {
    const config = domainAgeSchema.parse({ enabled: true, feed: { path: '/nonexistent/nrd.csv' } });
    expect(() => new DomainAges(config, { nowMs: () => T0 })).toThrow(ConfigError);
    expect(() => new DomainAges(config, { nowMs: () => T0 })).toThrow(/^domain_age\.feed\.path: cannot read/);
  });

  it('reports a first sighting only once it means something (min_history_days)', async () => {
    const { ages, counted, clock } = offline();
    // Day 0: the resolver has just started watching; "first seen today" says nothing.
    expect(await ages.lookup('brand-new.net')).toBeUndefined();
    expect(counted).toEqual(['first_seen/not_found']);
    // Within the negative TTL the answer comes from memory.
    clock.nowMs = T0 + 1000;
    expect(await ages.lookup('brand-new.net')).toBeUndefined();
    expect(counted.at(-1)).toBe('cache/not_found');
    // Day 31: the sighting itself is 31 days old, so the domain is at least that old.
    clock.nowMs = T0 + 31 * DAY_MS;
    expect(await ages.lookupAge('brand-new.net')).toEqual({ days: 31, createdMs: T0, source: 'first_seen' });
    // Day 40: after 30 days of watching, a name never seen before is new here.
    clock.nowMs = T0 + 40 * DAY_MS;
    expect(await ages.lookupAge('other-new.net')).toEqual({ days: 0, createdMs: T0 + 40 * DAY_MS, source: 'first_seen' });
    expect(counted.slice(-2)).toEqual(['first_seen/ok', 'first_seen/ok']);
  });

  it('keeps first sightings and answers in the given database across a restart', async () => {
    const db = new Database(':memory:');
    onTestFinished(() => {
      db.close();
    });
    const clock = { nowMs: T0 };
    const first = offline({}, clock, db);
    expect(await first.ages.lookup('brand-new.net')).toBeUndefined();
    await first.ages.close();

    clock.nowMs = T0 + 31 * DAY_MS;
    const second = offline({}, clock, db);
    expect(await second.ages.lookup('brand-new.net')).toBe(31);
    expect(second.counted).toEqual(['first_seen/ok']); // the day-0 row had expired; the sighting had not
    const rows = db.prepare('SELECT domain, first_seen_ms FROM domain_first_seen').all();
    expect(rows).toEqual([{ domain: 'brand-new.net', first_seen_ms: T0 }]);
  });

  it('does not wait at all with a zero budget, and ignores names that are not domains', async () => {
    const { ages, counted } = offline();
    expect(await ages.lookup('localhost')).toBeUndefined();
    expect(await ages.lookup('')).toBeUndefined();
    expect(counted).toEqual([]);
    expect(await ages.lookup('zero-budget.org', 0)).toBeUndefined();
    expect(ages.stats().budgetExceeded).toBe(1);
  });

  it('fails at start, naming the field, when a configured bootstrap file is missing or not one', () => {
    const missing = domainAgeSchema.parse({ enabled: true, rdap: { bootstrap_file: '/nonexistent/dns.json' } });
    expect(() => new DomainAges(missing, { nowMs: () => T0 })).toThrow(/^domain_age\.rdap\.bootstrap_file: ENOENT/);
    const notOne = domainAgeSchema.parse({ enabled: true, rdap: { bootstrap_file: feedFile('{"services": "no"}') } });
    expect(() => new DomainAges(notOne, { nowMs: () => T0 })).toThrow(/is not an RDAP bootstrap file$/);
  });

  it('answers unknown (and logs) instead of failing the query when the database fails', async () => {
    const db = new Database(':memory:');
    const warnings: string[] = [];
    const config = domainAgeSchema.parse({ enabled: true, rdap: { enabled: false }, whois: { enabled: false } });
    const ages = new DomainAges(config, {
      nowMs: () => T0,
      db,
      logger: { warn: (_obj, msg) => warnings.push(msg), info: () => undefined, debug: () => undefined },
    });
    onTestFinished(() => ages.close());
    db.close();
    await expect(ages.lookup('example.org')).resolves.toBeUndefined();
    expect(warnings).toEqual(['domain age store read failed', 'domain age lookup failed']); // the first-seen write fails too
  });

  it('answers undefined after close', async () => {
    const { ages } = offline({ feed: { path: feedFile('fresh-cdn-sync.com,2026-01-12\n') } });
    await ages.close();
    expect(await ages.lookup('fresh-cdn-sync.com')).toBeUndefined();
  });
});
