// Local zones: the master-file parser (syntax, escapes, $INCLUDE, errors with file:line) and the
// answer logic (AA data, NODATA/NXDOMAIN with SOA, RFC 4592 wildcards, CNAME chains, delegations).
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseMasterFile, parseTtl, RRTYPE, type ZoneRecord } from '../../src/zones/master-file.js';
import { Zone } from '../../src/zones/zone.js';

const dir = fileURLToPath(new URL('../../fixtures/zones/local/', import.meta.url));
const corpFile = `${dir}corp.example.zone`;
const records = parseMasterFile(corpFile, { origin: 'corp.example' });
const zone = new Zone('corp.example', records, corpFile);
const find = (owner: string, type: number): ZoneRecord[] => records.filter((r) => r.owner === owner && r.type === type);
const inline = (text: string, origin = 'x.example') => parseMasterFile('inline.zone', { origin, readFile: () => text });

describe('master-file parser', () => {
  it('reads relative and absolute names, @, blank owners, TTL units and class/TTL in either order', () => {
    const soa = find('corp.example', RRTYPE.SOA)[0]!;
    expect(soa.ttl).toBe(3600);
    // mname ns1.corp.example, rname hostmaster.corp.example, then serial … minimum (1w = 604800).
    expect(soa.rdata.subarray(-20).toString('hex')).toBe(
      [2026120601, 3600, 600, 604800, 300].map((n) => n.toString(16).padStart(8, '0')).join(''),
    );
    expect(find('corp.example', RRTYPE.NS)[0]!.target).toBe('ns1.corp.example');
    expect(find('git.corp.example', RRTYPE.A)[0]!.ttl).toBe(120); // "IN 120 A"
    expect(find('mail.corp.example', RRTYPE.A)[0]!.ttl).toBe(300);
    expect(find('mail.corp.example', RRTYPE.AAAA)[0]!.rdata.toString('hex')).toBe('fd000000000000000000000000000025');
    expect(find('docs.corp.example', RRTYPE.CNAME)[0]!.target).toBe('wiki.corp.example');
    expect(find('outside.corp.example', RRTYPE.CNAME)[0]!.target).toBe('www.example.com');
  });

  it('decodes quoted TXT strings with escapes and ";" inside quotes', () => {
    const txt = find('quoted.corp.example', RRTYPE.TXT)[0]!.rdata;
    const strings: string[] = [];
    for (let i = 0; i < txt.length; i += 1 + txt[i]!) strings.push(txt.subarray(i + 1, i + 1 + txt[i]!).toString('latin1'));
    expect(strings).toEqual(['semi;colon', 'quote"inside', 'escAped', 'tab\t', 'unquoted']);
  });

  it('encodes HTTPS/SVCB params in key order, SRV, CAA and RFC 3597 generic RDATA', () => {
    const https = find('svc.corp.example', RRTYPE.HTTPS)[0]!.rdata.toString('hex');
    // priority 1, target root, alpn(1) "h2","h3", port(3) 8443, ipv4hint(4) 10.20.0.5
    expect(https).toBe('0001' + '00' + '0001' + '0006' + '026832' + '026833' + '0003' + '0002' + '20fb' + '0004' + '0004' + '0a140005');
    expect(find('_ldap._tcp.corp.example', RRTYPE.SRV)[0]!.rdata.subarray(0, 6).toString('hex')).toBe('000000640185');
    expect(find('corp.example', RRTYPE.CAA)[0]!.rdata.toString('latin1')).toBe('\x00\x05issueletsencrypt.org');
    expect(find('generic.corp.example', 65280)[0]!.rdata.toString('hex')).toBe('0a0b0c0d');
  });

  it('follows $INCLUDE relative to the including file, with and without an origin', () => {
    expect(find('inc-host.corp.example', RRTYPE.A)).toHaveLength(1);
    expect(find('other.corp.example', RRTYPE.A)).toHaveLength(1);
    expect(find('www.other.corp.example', RRTYPE.A)[0]!.at).toMatch(/sub\/other\.inc:3$/);
  });

  it('parses TTLs with BIND units and refuses nonsense', () => {
    expect(parseTtl('1h30m')).toBe(5400);
    expect(parseTtl('1W')).toBe(604800);
    expect(parseTtl('2147483648')).toBeUndefined();
    expect(parseTtl('1x')).toBeUndefined();
  });

  it.each([
    ['www IN A 10.0.0.300', /inline\.zone:2: A: "10\.0\.0\.300" is not an IPv4 address/],
    ['www IN BOGUS 1.2.3.4', /inline\.zone:2: unknown record type "BOGUS"/],
    ['www IN MX mail', /inline\.zone:2: MX takes 2 fields, found 1/],
    ['www IN TXT "open', /inline\.zone:2: unterminated quoted string/],
    ['www IN A ( 10.0.0.1', /inline\.zone:2: "\(" is never closed/],
    ['$GENERATE 1-10 h$ A 10.0.0.$', /inline\.zone:2: unsupported directive \$GENERATE/],
    ['www CH A 10.0.0.1', /inline\.zone:2: class CH: only IN is served/],
    [`${'a'.repeat(64)} A 10.0.0.1`, /inline\.zone:2: label longer than 63 bytes/],
    ['svc HTTPS 1 . alpn=h2 alpn=h3', /SvcParam "alpn" given twice/],
  ])('names file:line and the fault: %s', (line, message) => {
    expect(() => inline(`$TTL 300\n${line}\n`)).toThrow(message);
  });

  it('needs a TTL from somewhere', () => {
    expect(() => inline('www A 10.0.0.1\n')).toThrow(/inline\.zone:1: no TTL/);
  });
});

describe('zone checks', () => {
  const zoneOf = (body: string) => new Zone('x.example', inline(`$TTL 300\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 10.0.0.1\n${body}`), 'inline.zone');
  it('accepts a good zone', () => expect(zoneOf('www A 10.0.0.2\n').recordCount).toBe(4));
  it('refuses CNAME beside other data, two SOAs, out-of-zone names, a missing SOA', () => {
    expect(() => zoneOf('www CNAME ns\nwww A 10.0.0.2\n')).toThrow(/inline\.zone:5: www\.x\.example has a CNAME and other data/);
    expect(() => zoneOf('@ SOA ns hm 2 2 3 4 5\n')).toThrow(/exactly one SOA/);
    expect(() => zoneOf('www.elsewhere.example. A 10.0.0.2\n')).toThrow(/inline\.zone:5: www\.elsewhere\.example is outside the zone x\.example/);
    expect(() => new Zone('x.example', inline('$TTL 300\n@ NS ns\n'), 'inline.zone')).toThrow(/exactly one SOA/);
  });
});

describe('answers', () => {
  it('answers data with the owner as asked, and glue for MX targets', () => {
    const a = zone.lookup('MAIL.corp.example', RRTYPE.A);
    expect(a.kind).toBe('answer');
    const mx = zone.lookup('corp.example', RRTYPE.MX);
    if (mx.kind !== 'answer') throw new Error(mx.kind);
    expect(mx.answer).toHaveLength(1);
    expect(mx.additional.map((r) => r.type).sort()).toEqual([RRTYPE.A, RRTYPE.AAAA]);
  });

  it('NODATA: empty answer, the SOA in authority with TTL min(SOA TTL, MINIMUM)', () => {
    const r = zone.lookup('git.corp.example', RRTYPE.AAAA);
    if (r.kind !== 'answer') throw new Error(r.kind);
    expect(r.answer).toEqual([]);
    expect(r.authority).toHaveLength(1);
    expect(r.authority[0]!.type).toBe(RRTYPE.SOA);
    expect(r.authority[0]!.ttl).toBe(300);
  });

  it('NXDOMAIN with the SOA; an empty non-terminal is NODATA, not NXDOMAIN (RFC 4592 §2.2.2)', () => {
    expect(zone.lookup('nope.corp.example', RRTYPE.A).kind).toBe('nxdomain');
    const ent = zone.lookup('empty.nonterminal.corp.example', RRTYPE.A);
    expect(ent.kind).toBe('answer');
    if (ent.kind === 'answer') expect(ent.authority[0]!.type).toBe(RRTYPE.SOA);
    // Below an empty non-terminal with no wildcard: NXDOMAIN.
    expect(zone.lookup('x.empty.nonterminal.corp.example', RRTYPE.A).kind).toBe('nxdomain');
  });

  it('wildcards synthesise the asked name, at any depth below the closest encloser, and NODATA for other types', () => {
    const r = zone.lookup('a.b.apps.corp.example', RRTYPE.A);
    if (r.kind !== 'answer') throw new Error(r.kind);
    expect(r.answer[0]!.name).toBe('a.b.apps.corp.example');
    expect(r.answer[0]!.rdata.toString('hex')).toBe('0a140101');
    const nodata = zone.lookup('x.apps.corp.example', RRTYPE.MX);
    expect(nodata.kind === 'answer' && nodata.answer.length === 0 && nodata.authority.length === 1).toBe(true);
    // apps.corp.example itself exists only as an empty non-terminal: the wildcard does not answer for it.
    const self = zone.lookup('apps.corp.example', RRTYPE.A);
    expect(self.kind === 'answer' && self.answer.length === 0).toBe(true);
  });

  it('follows CNAME chains inside the zone, and hands back a target outside it', () => {
    const r = zone.lookup('chain1.corp.example', RRTYPE.A);
    if (r.kind !== 'answer') throw new Error(r.kind);
    expect(r.answer.map((x) => [x.name, x.type])).toEqual([
      ['chain1.corp.example', RRTYPE.CNAME],
      ['chain2.corp.example', RRTYPE.CNAME],
      ['api.corp.example', RRTYPE.CNAME],
      ['git.corp.example', RRTYPE.A],
    ]);
    const out = zone.lookup('outside.corp.example', RRTYPE.A);
    expect(out).toMatchObject({ kind: 'cname-out', target: 'www.example.com' });
    expect(zone.lookup('api.corp.example', RRTYPE.CNAME).kind).toBe('answer');
  });

  it('stops a CNAME loop instead of spinning', () => {
    const z = new Zone('x.example', inline('$TTL 300\n@ SOA ns hm 1 2 3 4 5\n@ NS ns\nns A 10.0.0.1\na CNAME b\nb CNAME a\n'), 'inline.zone');
    const r = z.lookup('a.x.example', RRTYPE.A);
    expect(r.kind === 'answer' && r.answer.length <= 9).toBe(true);
  });

  it('hands a name at or below a delegation back to be forwarded', () => {
    expect(zone.lookup('lab.corp.example', RRTYPE.A)).toEqual({ kind: 'delegated', cut: 'lab.corp.example' });
    expect(zone.lookup('host.lab.corp.example', RRTYPE.A)).toEqual({ kind: 'delegated', cut: 'lab.corp.example' });
  });
});
