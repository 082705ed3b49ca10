// The master-file parser cross-checked against BIND's named-checkzone (bind9-utils): on every good
// fixture, what BIND reads (dumped by `named-checkzone -D` in canonical form: absolute names, explicit
// TTLs and classes, one record a line) parsed by us must be exactly the records we read from the
// original; every bad fixture is refused by both, ours naming file:line.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseMasterFile, type ZoneRecord } from '../../src/zones/master-file.js';
import { Zone } from '../../src/zones/zone.js';
import { loadRpzZone, renderRpz } from '../../src/zones/rpz.js';

const dir = fileURLToPath(new URL('../../fixtures/zones/local/', import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'dnswarden-zones-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

const canonical = (rs: readonly ZoneRecord[]) =>
  rs.map((r) => `${r.owner} ${r.ttl} ${r.type} ${r.rdata.toString('hex')}`).sort();

describe('named-checkzone agrees with our parser', () => {
  it('is installed (bind9-utils; .ci/run installs it)', () => {
    expect(spawnSync('named-checkzone', ['-v']).status).toBe(0);
  });

  const good: Array<[string, string]> = [
    ['corp.example', 'corp.example.zone'],
    ['dnswarden.test', '../dnswarden.test.zone'],
    ['example.com', '../example.com.zone'],
    ['corp.internal', '../corp.internal.zone'],
  ];
  it.each(good)('%s: the same records, byte for byte', (origin, file) => {
    const path = join(dir, file);
    const ours = parseMasterFile(path, { origin });
    new Zone(origin, ours, path); // and the zone-level checks accept it, as BIND does
    const dump = execFileSync('named-checkzone', ['-q', '-D', '-o', '-', origin, path], { cwd: dir, encoding: 'utf8' });
    const dumped = join(work, `${origin}.dump`);
    writeFileSync(dumped, dump);
    const bind = parseMasterFile(dumped, { origin });
    expect(ours.length).toBeGreaterThan(3);
    expect(canonical(ours)).toEqual(canonical(bind));
  });

  const bad = readdirSync(join(dir, 'bad')).filter((f) => f.endsWith('.zone'));
  it('has bad fixtures to try', () => expect(bad.length).toBeGreaterThanOrEqual(6));
  it.each(bad)('bad/%s: refused by both, ours with file:line or the zone file named', (file) => {
    const path = join(dir, 'bad', file);
    const bindStatus = spawnSync('named-checkzone', ['-q', 'bad.example', path], { cwd: join(dir, 'bad') }).status;
    expect(bindStatus).not.toBe(0);
    expect(() => new Zone('bad.example', parseMasterFile(path, { origin: 'bad.example' }), path)).toThrow(/bad\/[a-z-]+\.zone(:\d+)?: /);
  });
});

describe('RPZ files', () => {
  it.each(['threat.rpz', 'second.rpz'])('fixtures/rpz/%s loads in named-checkzone and in ours', (file) => {
    const path = fileURLToPath(new URL(`../../fixtures/rpz/${file}`, import.meta.url));
    expect(spawnSync('named-checkzone', ['-q', 'rpz.test', path]).status).toBe(0);
    expect(loadRpzZone('rpz.test', path).stats.triggers).toBeGreaterThan(0);
  });
  it('the rendered deny list is a zone named-checkzone accepts', () => {
    const path = join(work, 'export.rpz');
    writeFileSync(path, renderRpz('dnswarden.rpz', 3, [{ domain: 'evil.example', reason: 'hand-added' }, { domain: 'xn--bcher-kva.example', reason: 'confirmed quarantine q-1' }]));
    const r = spawnSync('named-checkzone', ['dnswarden.rpz', path], { encoding: 'utf8' });
    expect(r.stdout + r.stderr).toContain('loaded serial 3');
    expect(r.status).toBe(0);
  });
});
