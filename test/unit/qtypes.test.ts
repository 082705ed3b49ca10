// The one table of query type names (src/ops/qtypes.ts): every type's text reads back as the same number, and the
// codec, the metrics and replay agree with it.
import { describe, expect, it } from 'vitest';
import { QTYPE, qtypeMnemonic, qtypeOf, qtypeText } from '../../src/ops/qtypes.js';
import { QTYPE as WIRE_QTYPE } from '../../src/dns/wire.js';
import { qtypeName } from '../../src/ops/telemetry.js';
import { SESSION_TYPES } from '../../src/policy/schema.js';
import { sessionTypeSchema } from '../../src/ops/config.js';

describe('query type names', () => {
  it('reads back every type 0–65535 from its text', () => {
    let named = 0;
    for (let n = 0; n <= 65_535; n++) {
      const text = qtypeText(n);
      if (qtypeMnemonic(n) !== undefined) named++;
      if (qtypeOf(text) !== n) expect.fail(`${n} → ${text} → ${String(qtypeOf(text))}`);
    }
    expect(named).toBe(Object.keys(QTYPE).length);
  });

  it('reads mnemonics in any case and TYPE<n>; rejects the rest', () => {
    expect(qtypeOf('txt')).toBe(16);
    expect(qtypeOf('Caa')).toBe(257);
    expect(qtypeOf('TYPE65399')).toBe(65_399);
    expect(qtypeOf('TYPE65536')).toBeUndefined();
    expect(qtypeOf('BOGUS')).toBeUndefined();
    expect(qtypeOf('')).toBeUndefined();
  });

  it('is the table the codec uses, and metric labels name a subset of it', () => {
    expect(WIRE_QTYPE).toBe(QTYPE);
    for (const n of Object.values(QTYPE)) {
      const label = qtypeName(n);
      expect(label === 'other' || label === qtypeText(n)).toBe(true);
    }
    expect(qtypeName(QTYPE.TXT)).toBe('TXT');
    expect(qtypeName(65_399)).toBe('other');
  });
});

describe('session types', () => {
  it('has one list, and the config boundary validates against it', () => {
    expect(sessionTypeSchema.options).toEqual([...SESSION_TYPES]);
    expect(sessionTypeSchema.safeParse('batch').success).toBe(true);
    expect(sessionTypeSchema.safeParse('nightly').success).toBe(false);
  });
});
