import { describe, expect, it } from 'vitest';
import { charClassSignal, charStats, domainAgeSignal, entropySignal, lengthSignal, qtypeSignal, ramp } from '../../scoring/lexical.js';
import { platformSet, splitName } from '../../scoring/names.js';
import { base32, hex, prng } from '../../fixtures/corpora/generate.mjs';

const platforms = platformSet();
const r = prng(42);
const randomHex = hex(r.bytes(60)); // 120 chars
const randomB32 = base32(r.bytes(75)); // 120 chars

describe('charStats', () => {
  it.each([
    ['deadbeef0123', 'hex'],
    ['documentation', 'letters'],
    ['mzxw6ytboi2345', 'base32'],
    ['api-v1-eu', 'alnum'],
    ['abc_def', 'base64'],
    ['ab+c/d=', 'base64'],
  ] as const)('%s is %s', (s, alphabet) => {
    expect(charStats(s).alphabet).toBe(alphabet);
  });

  it('normalises entropy by length and alphabet: random text ≈ 1 at any length, words lower', () => {
    expect(charStats(randomHex).normalised).toBeGreaterThan(0.97);
    expect(charStats(randomB32).normalised).toBeGreaterThan(0.95);
    expect(charStats(randomHex.slice(0, 16)).normalised).toBeGreaterThan(0.85);
    expect(charStats('partition-cname-trouter-ic3-edf-trouter-service-trouter-2.d02-004').normalised).toBeCloseTo(0.823, 2);
    expect(charStats('').normalised).toBe(0);
  });

  it('short words look as random as random strings, so entropy only counts past 30 characters', () => {
    const split = splitName('documentation.example.com', platforms);
    const st = charStats(split.subdomain);
    expect(st.normalised).toBeGreaterThan(0.95);
    expect(entropySignal(split, st, 1).value).toBe(0);
  });

  it('ignores dots and counts letter/digit switches', () => {
    const s = charStats('a1.b2');
    expect(s.length).toBe(4);
    expect(s.switchRate).toBe(1);
    expect(s.digitRatio).toBe(0.5);
    expect(charStats('hello').switchRate).toBe(0);
  });
});

describe('per-query signals', () => {
  const score = (name: string) => {
    const split = splitName(name, platforms);
    const st = charStats(split.subdomain);
    return { e: entropySignal(split, st, 1).value, c: charClassSignal(split, st, 1).value, l: lengthSignal(split, 1).value };
  };

  it('a bulk tunnel name saturates entropy, class and length', () => {
    const name = `${randomB32.slice(0, 60)}.${randomB32.slice(60)}.${hex(r.bytes(20))}.t.xfl-cdn.net`;
    const s = score(name);
    expect(s.e).toBe(1);
    expect(s.c).toBe(1);
    expect(s.l).toBeGreaterThan(0.7);
  });

  it('a single 40-hex label stays low (a SHA-1 is not a tunnel)', () => {
    const s = score('885e2dd94adb263c2321d2d0f3778d18523bce4a.ipv4.cws.conviva.com');
    expect(s.e).toBeLessThan(0.2);
    expect(s.c).toBeLessThan(0.4);
    expect(s.l).toBe(0);
  });

  it('platform apexes waive the lexical signals', () => {
    const split = splitName(`${randomHex.slice(0, 63)}.us-east-1.prod.service.minerva.devices.a2z.com`, platforms);
    const st = charStats(split.subdomain);
    expect(entropySignal(split, st, 1)).toMatchObject({ value: 0, reason: 'platform apex' });
    expect(charClassSignal(split, st, 1).value).toBe(0);
    expect(lengthSignal(split, 1).value).toBe(0);
  });

  it('length: 180-char subdomain, 63-char label or 12 labels each give 1', () => {
    expect(lengthSignal(splitName(`${'a'.repeat(50)}.`.repeat(4) + 'x.com', platforms), 1).value).toBe(1);
    expect(lengthSignal(splitName(`${'a'.repeat(63)}.x.com`, platforms), 1).value).toBe(1);
    expect(lengthSignal(splitName(`${'a.'.repeat(12)}x.com`, platforms), 1).value).toBe(1);
    expect(lengthSignal(splitName('www.x.com', platforms), 1).value).toBe(0);
  });

  it('qtype risk', () => {
    expect(qtypeSignal(10, 1)).toEqual({ id: 'qtype', value: 1, weight: 1, reason: 'NULL' });
    expect(qtypeSignal(16, 1).value).toBe(0.6);
    expect(qtypeSignal(1, 1).value).toBe(0);
    expect(qtypeSignal(4242, 1).reason).toBe('TYPE4242');
  });

  it('domain age: young scores high, old zero, unknown its own weaker value', () => {
    expect(domainAgeSignal(2, 30, 0.3, 1).value).toBeCloseTo(0.933, 3);
    expect(domainAgeSignal(30, 30, 0.3, 1).value).toBe(0);
    expect(domainAgeSignal(400, 30, 0.3, 1).value).toBe(0);
    expect(domainAgeSignal(undefined, 30, 0.3, 1)).toMatchObject({ value: 0.3, reason: 'age unknown' });
  });

  it('ramp', () => {
    expect(ramp(5, 10, 20)).toBe(0);
    expect(ramp(15, 10, 20)).toBe(0.5);
    expect(ramp(25, 10, 20)).toBe(1);
  });
});
