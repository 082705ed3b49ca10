// Pure parsing for domain ages: registry dates, WHOIS texts, RDAP objects, the IANA bootstrap,
// the NRD feed, plausibility, and the config section's defaults. No sockets, no clock.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { isPlausibleCreation, normalizeDomain, parseFeed } from '../../src/domain-age/ages.js';
import { domainAgeSchema } from '../../src/domain-age/schema.js';
import { RdapBootstrap, registrationOf } from '../../src/domain-age/rdap.js';
import { creationFromWhois, parseRegistryDate, parseWhoisServer } from '../../src/domain-age/whois.js';

const NOW = Date.parse('2026-01-15T12:00:00Z');
const rdapFixture = (name: string): unknown => JSON.parse(readFileSync(new URL(`../../fixtures/rdap/${name}`, import.meta.url), 'utf8'));
const whoisFixture = (name: string): string => readFileSync(new URL(`../../fixtures/whois/${name}`, import.meta.url), 'utf8');

describe('parseRegistryDate', () => {
  it.each([
    ['2014-06-03T19:02:51Z', Date.UTC(2014, 5, 3, 19, 2, 51)],
    ['2014-06-03T19:02:51.123Z', Date.UTC(2014, 5, 3, 19, 2, 51)],
    ['2018-03-12T21:44:25+01:00', Date.UTC(2018, 2, 12, 20, 44, 25)],
    ['2001/03/12', Date.UTC(2001, 2, 12)],
    ['1998.11.30 13:00:00', Date.UTC(1998, 10, 30, 13, 0, 0)],
    ['26-Nov-1996', Date.UTC(1996, 10, 26)],
    ['19960101 #1234567', Date.UTC(1996, 0, 1)],
    ['31.12.2003', Date.UTC(2003, 11, 31)],
    ['  2005-07-08  ', Date.UTC(2005, 6, 8)],
  ])('reads %j', (text, expected) => {
    expect(parseRegistryDate(text)).toBe(expected);
  });

  it.each(['', 'last Tuesday, probably', '2023-02-30', '2014-13-01', '31-Foo-2003', 'REDACTED FOR PRIVACY', '12345'])(
    'rejects %j',
    (text) => {
      expect(parseRegistryDate(text)).toBeUndefined();
    },
  );
});

describe('creationFromWhois', () => {
  it.each([
    ['identity-digital-io.txt', Date.UTC(2014, 5, 3, 19, 2, 51)],
    ['nominet-uk.txt', Date.UTC(1996, 10, 26)],
    ['jprs-jp.txt', Date.UTC(2001, 2, 12)],
  ])('finds the creation date in %s', (file, expected) => {
    expect(creationFromWhois(whoisFixture(file))).toEqual({ kind: 'ok', createdMs: expected });
  });

  it('reports a registry "Domain not found." as not_found', () => {
    expect(creationFromWhois(whoisFixture('not-found-io.txt'))).toEqual({ kind: 'not_found', detail: 'registry reports no such domain' });
  });

  it('reports DENIC (which publishes no creation date) as an error, not a date', () => {
    expect(creationFromWhois(whoisFixture('denic-de.txt'))).toEqual({ kind: 'error', detail: 'no creation date in WHOIS answer' });
  });

  it('reports an unreadable creation date and empty answers as errors', () => {
    expect(creationFromWhois('Creation Date: sometime in spring\r\n')).toEqual({ kind: 'error', detail: 'unparseable creation date' });
    expect(creationFromWhois(' \r\n')).toEqual({ kind: 'error', detail: 'empty WHOIS answer' });
    expect(creationFromWhois('\u0000\u00ff\u0013garbage')).toEqual({ kind: 'error', detail: 'no creation date in WHOIS answer' });
  });
});

describe('registrationOf (RDAP domain object)', () => {
  it('reads the registration event', () => {
    expect(registrationOf(rdapFixture('domain-example.com.json'), 'example.com')).toEqual({ kind: 'ok', createdMs: Date.UTC(1995, 7, 14, 4) });
  });

  it('treats a missing registration event and an RDAP 404 body as not_found', () => {
    expect(registrationOf(rdapFixture('domain-no-registration.json'), 'nodate.com')).toEqual({ kind: 'not_found', detail: 'no registration event' });
    expect(registrationOf(rdapFixture('error-404.json'), 'x.com')).toEqual({ kind: 'not_found', detail: 'RDAP error 404' });
  });

  it('rejects error bodies, answers for another name, non-RFC 3339 dates and non-objects', () => {
    expect(registrationOf(rdapFixture('error-500.json'), 'x.com')).toEqual({ kind: 'error', detail: 'RDAP error 500' });
    expect(registrationOf(rdapFixture('domain-example.com.json'), 'other.com')).toEqual({ kind: 'error', detail: 'answer is for EXAMPLE.COM' });
    const loose = { objectClassName: 'domain', events: [{ eventAction: 'registration', eventDate: 'Aug 14 1995' }] };
    expect(registrationOf(loose, 'example.com')).toEqual({ kind: 'error', detail: 'unparseable date "Aug 14 1995"' });
    expect(registrationOf([1, 2], 'example.com')).toEqual({ kind: 'error', detail: 'response is not an RDAP object' });
    expect(registrationOf({ objectClassName: 'entity' }, 'example.com')).toEqual({ kind: 'error', detail: 'not an RDAP domain object' });
  });
});

describe('RdapBootstrap', () => {
  const shipped = RdapBootstrap.parse(rdapFixture('dns.json'))!;

  it('loads the shipped IANA file', () => {
    expect(shipped.publication).toBe('2025-11-06T23:00:01Z');
    expect(shipped.size).toBe(1192);
    expect(shipped.baseUrlFor('example.com')).toBe('https://rdap.verisign.com/com/v1/');
    expect(shipped.baseUrlFor('example.co.uk')).toBe('https://rdap.nominet.uk/uk/');
    expect(shipped.baseUrlFor('example.io')).toBeUndefined(); // no RDAP for .io in IANA's file: WHOIS
  });

  it('prefers https, adds the trailing slash, and rejects documents without services', () => {
    const doc = { services: [[['x'], ['http://a.example/rdap', 'https://b.example/rdap']], [['y'], ['http://c.example/']]] };
    const parsed = RdapBootstrap.parse(doc)!;
    expect(parsed.baseUrlFor('foo.x')).toBe('https://b.example/rdap/');
    expect(parsed.baseUrlFor('foo.y')).toBe('http://c.example/');
    expect(RdapBootstrap.parse({})).toBeUndefined();
    expect(RdapBootstrap.parse('garbage')).toBeUndefined();
    expect(RdapBootstrap.parse({ services: [[['z'], ['ftp://no.example/']]] })).toBeUndefined();
  });
});

describe('isPlausibleCreation', () => {
  it.each([
    [Date.UTC(1984, 11, 31, 23, 59), false],
    [Date.UTC(1985, 0, 1), true],
    [NOW - 1, true],
    [NOW + 3_600_000, true], // date-only formats: a day of skew is allowed
    [NOW + 2 * 86_400_000, false],
    [Number.NaN, false],
  ])('%d → %s', (createdMs, expected) => {
    expect(isPlausibleCreation(createdMs, NOW)).toBe(expected);
  });
});

describe('parseFeed (domain,created_date)', () => {
  it('reads a commercial NRD feed with header, comments, quotes and bad lines', () => {
    const text = [
      'domain,created_date',
      '# generated 2026-01-15',
      'fresh-cdn-sync.com,2026-01-14',
      '"Quoted-Name.NET.",2026-01-10T08:00:00Z',
      'local-time.org,2026-01-13 10:00:00',
      'not a domain,2026-01-14',
      'future.com,2027-01-01',
      'nodate.com,',
      'old.com,1970-01-01',
      '',
    ].join('\r\n');
    const { ages, rejected } = parseFeed(text, NOW);
    expect([...ages]).toEqual([
      ['fresh-cdn-sync.com', Date.UTC(2026, 0, 14)],
      ['quoted-name.net', Date.UTC(2026, 0, 10, 8)],
      ['local-time.org', Date.UTC(2026, 0, 13, 10)],
    ]);
    expect(rejected).toBe(4);
  });

  it('needs no header', () => {
    expect([...parseFeed('a-b.com,2025-12-01\n', NOW).ages]).toEqual([['a-b.com', Date.UTC(2025, 11, 1)]]);
  });
});

describe('normalizeDomain and parseWhoisServer', () => {
  it.each([
    ['Example.COM.', 'example.com'],
    ['xn--bcher-kva.example', 'xn--bcher-kva.example'],
    ['localhost', undefined],
    ['', undefined],
    ['-bad.com', undefined],
    ['a..com', undefined],
  ])('normalizeDomain(%j) → %j', (input, expected) => {
    expect(normalizeDomain(input)).toBe(expected);
  });

  it('reads host[:port]', () => {
    expect(parseWhoisServer('whois.nic.io')).toEqual({ host: 'whois.nic.io', port: 43 });
    expect(parseWhoisServer('127.0.0.1:4343')).toEqual({ host: '127.0.0.1', port: 4343 });
    expect(parseWhoisServer('[::1]:4343')).toEqual({ host: '::1', port: 4343 });
    expect(parseWhoisServer('host:99999')).toBeUndefined();
  });
});

describe('domainAgeSchema', () => {
  it('defaults every field and is off by default (safe without internet)', () => {
    expect(domainAgeSchema.parse({})).toEqual({
      enabled: false,
      budget_ms: 50,
      max_concurrent: 8,
      max_queued: 1000,
      cache_size: 100_000,
      positive_ttl_sec: 604_800,
      negative_ttl_sec: 3600,
      rdap: {
        enabled: true,
        timeout_ms: 2000,
        max_response_bytes: 262_144,
        servers: {},
        bootstrap_file: '',
        bootstrap_url: '',
        bootstrap_refresh_sec: 86_400,
      },
      whois: { enabled: true, timeout_ms: 3000, servers: {} },
      feed: { path: '' },
      first_seen: { enabled: true, min_history_days: 30 },
    });
  });

  it('keeps inner defaults when a nested section is partly given', () => {
    const parsed = domainAgeSchema.parse({ enabled: true, rdap: { servers: { test: 'http://127.0.0.1:8080/' } } });
    expect(parsed.rdap).toMatchObject({ enabled: true, timeout_ms: 2000, servers: { test: 'http://127.0.0.1:8080/' } });
  });

  it('rejects unknown keys, camelCase and bad servers', () => {
    expect(domainAgeSchema.safeParse({ budgetMs: 10 }).success).toBe(false);
    expect(domainAgeSchema.safeParse({ rdap: { servers: { com: 'ftp://x/' } } }).success).toBe(false);
    expect(domainAgeSchema.safeParse({ whois: { servers: { io: 'host:abc' } } }).success).toBe(false);
    expect(domainAgeSchema.safeParse({ whois: { servers: { '.io': 'whois.nic.io' } } }).success).toBe(false);
  });
});
