// The zone set (src/zones/zone-set.ts): the most specific zone answers a name, loading names the config field and
// file:line, the file poll notices a change only once the file held still; nameToWire (src/dns/wire.ts) inverts
// the key form names are kept in, escapes included.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadRpzSet, loadZoneSet, pollFiles } from '../../src/zones/zone-set.js';
import { nameToWire } from '../../src/dns/wire.js';
import { parseConfig } from '../../src/ops/config.js';

const ROOT = resolve(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'dnswarden-zone-set-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const zone = (origin: string, extra = ''): string => `$ORIGIN ${origin}.\n$TTL 60\n@ SOA ns hm 1 3600 600 86400 60\n@ NS ns\nns A 10.0.0.1\n${extra}`;

describe('ZoneSet', () => {
  it('the most specific zone answers, whatever the configured order', () => {
    writeFileSync(join(dir, 'parent.zone'), zone('corp.example', 'host.lab A 10.0.0.2\n'));
    writeFileSync(join(dir, 'child.zone'), zone('lab.corp.example', 'host A 10.0.0.3\n'));
    const set = loadZoneSet([{ name: 'corp.example', file: join(dir, 'parent.zone') }, { name: 'lab.corp.example', file: join(dir, 'child.zone') }]);
    expect(set.find('host.lab.corp.example')?.origin).toBe('lab.corp.example');
    expect(set.find('lab.corp.example')?.origin).toBe('lab.corp.example');
    expect(set.find('www.corp.example')?.origin).toBe('corp.example');
    expect(set.find('xcorp.example')).toBeUndefined();
    expect(set.find('example')).toBeUndefined();
  });

  it('a file that does not load names the config field, then file:line', () => {
    expect(() => loadZoneSet([{ name: 'corp.example', file: join(ROOT, 'fixtures/zones/local/corp.example.zone') }, { name: 'x.example', file: join(ROOT, 'fixtures/zones/local/bad/cname-and-data.zone') }]))
      .toThrow(/^zones\[1\]\.file: .*cname-and-data\.zone:\d+: /);
    expect(() => loadRpzSet([{ name: 'gone', file: join(dir, 'no-such.rpz') }])).toThrow(/^policy\.rpz\[0\]\.file: .*cannot read .*no-such\.rpz \(ENOENT\)/);
  });

  it('config paths are made absolute against the config file directory', () => {
    const c = parseConfig({ zones: [{ name: 'Corp.Example.', file: 'zones/corp.zone' }], policy: { rpz: [{ name: 'feed', file: '/abs/feed.rpz' }] } }, '/etc/dnswarden');
    expect(c.zones).toEqual([{ name: 'corp.example', file: '/etc/dnswarden/zones/corp.zone' }]);
    expect(c.policy.rpz[0]!.file).toBe('/abs/feed.rpz');
    expect(() => parseConfig({ zones: [{ name: '*.corp.example', file: 'x' }] })).toThrow(/zones\[0\]\.name/);
  });
});

describe('pollFiles', () => {
  it('calls back once per change, after the file held still for a period', async () => {
    const file = join(dir, 'poll.rpz');
    writeFileSync(file, 'one\n');
    let calls = 0;
    const poll = pollFiles(() => [{ name: 'p', file }], 50, () => { calls += 1; });
    try {
      await new Promise((r) => setTimeout(r, 200));
      expect(calls).toBe(0);
      writeFileSync(file, 'two, longer\n');
      const until = Date.now() + 10_000;
      while (calls === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      expect(calls).toBe(1);
      await new Promise((r) => setTimeout(r, 300));
      expect(calls).toBe(1);
    } finally {
      poll.stop();
    }
  });
});

describe('nameToWire', () => {
  it('writes labels, the root, and both escape forms', () => {
    expect(nameToWire('')).toEqual(Buffer.from([0]));
    expect(nameToWire('a.bc')).toEqual(Buffer.from([1, 0x61, 2, 0x62, 0x63, 0]));
    expect(nameToWire('a\\.b.c')).toEqual(Buffer.from([3, 0x61, 0x2e, 0x62, 1, 0x63, 0]));
    expect(nameToWire('\\000\\255x.c')).toEqual(Buffer.from([3, 0, 255, 0x78, 1, 0x63, 0]));
    expect(nameToWire('a\\\\b')).toEqual(Buffer.from([3, 0x61, 0x5c, 0x62, 0]));
  });
});
