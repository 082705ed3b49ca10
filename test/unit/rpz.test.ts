// RPZ consumed (QNAME triggers and their actions, zone order, exact vs wildcard) and produced.
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { RRTYPE, parseMasterFile } from '../../src/zones/master-file.js';
import { loadRpzZone, renderRpz, RpzSet, RpzZone } from '../../src/zones/rpz.js';

const dir = fileURLToPath(new URL('../../fixtures/rpz/', import.meta.url));
const threat = loadRpzZone('threat-intel', `${dir}threat.rpz`);
const second = loadRpzZone('second', `${dir}second.rpz`);
const set = new RpzSet([threat, second]);

describe('RPZ consumed', () => {
  it('maps each CNAME encoding to its action', () => {
    expect(set.match('bad.example')?.action.kind).toBe('nxdomain');
    expect(set.match('empty.example')?.action.kind).toBe('nodata');
    expect(set.match('ok.bad.example')?.action.kind).toBe('passthru');
    expect(set.match('sink.example')?.action.kind).toBe('drop');
    const local = set.match('x.walled.example')?.action;
    expect(local?.kind).toBe('local');
    if (local?.kind === 'local') expect(local.records.map((r) => r.type).sort()).toEqual([RRTYPE.A, RRTYPE.TXT]);
  });

  it('an exact trigger beats the wildcard; a wildcard covers every depth below, not the name itself', () => {
    expect(set.match('ok.bad.example')).toMatchObject({ trigger: 'ok.bad.example', action: { kind: 'passthru' } });
    expect(set.match('a.b.bad.example')).toMatchObject({ trigger: '*.bad.example', action: { kind: 'nxdomain' } });
    expect(set.match('walled.example')).toBeUndefined();
    expect(set.match('notbad.example')).toBeUndefined();
  });

  it('zones in order: the first zone with a trigger decides, later zones fill in', () => {
    expect(set.match('bad.example')?.zone).toBe('threat-intel');
    expect(new RpzSet([second, threat]).match('bad.example')).toMatchObject({ zone: 'second', action: { kind: 'passthru' } });
    expect(set.match('later.example')).toMatchObject({ zone: 'second', action: { kind: 'nxdomain' } });
  });

  it('counts the triggers it applies and the ones it ignores (rpz-ip and friends)', () => {
    expect(threat.stats).toEqual({ name: 'threat-intel', triggers: 6, ignored: 1 });
  });
});

describe('RPZ produced', () => {
  it('renders a zone our parser reads back to NXDOMAIN triggers for each domain and everything below it', () => {
    const text = renderRpz('dnswarden.rpz', 42, [
      { domain: 'evil.example', reason: 'confirmed quarantine q-1' },
      { domain: 'exfil.test', reason: 'hand-added\nby alice' },
    ]);
    const zone = loadRpzZoneFromText(text);
    const s = new RpzSet([zone]);
    expect(s.match('evil.example')?.action.kind).toBe('nxdomain');
    expect(s.match('a.b.exfil.test')?.action.kind).toBe('nxdomain');
    expect(s.match('example')).toBeUndefined();
    expect(text).toContain('SOA localhost. hostmaster.localhost. 42 ');
    expect(text).not.toMatch(/hand-added\nby/); // a newline in a reason cannot end the comment
  });
});

function loadRpzZoneFromText(text: string): RpzZone {
  const records = parseMasterFile('export.rpz', { origin: 'dnswarden.rpz', readFile: () => text });
  expect(records.some((r) => r.type === RRTYPE.SOA)).toBe(true);
  return new RpzZone('export', 'dnswarden.rpz', records);
}
