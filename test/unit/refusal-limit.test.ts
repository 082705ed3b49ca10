// The REFUSED rate limiter's arithmetic: prefixes, the token budget, slip, the bounded table.
import { describe, expect, it } from 'vitest';
import { prefixKey, RefusalLimiter, type RefusalLimitOptions } from '../../src/dns/refusal-limit.js';

const OPTS: RefusalLimitOptions = { perSecond: 4, slip: 2, ipv4Prefix: 24, ipv6Prefix: 56, maxPrefixes: 8 };

describe('prefixKey', () => {
  it('groups IPv4 sources by /24 and IPv6 by /56; an IPv4-mapped address is its IPv4 self', () => {
    expect(prefixKey('192.0.2.1', 24, 56)).toBe(prefixKey('192.0.2.254', 24, 56));
    expect(prefixKey('192.0.2.1', 24, 56)).not.toBe(prefixKey('192.0.3.1', 24, 56));
    expect(prefixKey('::ffff:192.0.2.9', 24, 56)).toBe(prefixKey('192.0.2.1', 24, 56));
    expect(prefixKey('2001:db8:1:2ff::1', 24, 56)).toBe(prefixKey('2001:db8:1:200:ffff::5', 24, 56));
    expect(prefixKey('2001:db8:1:2ff::1', 24, 56)).not.toBe(prefixKey('2001:db8:1:300::1', 24, 56));
    expect(prefixKey('2001:0db8:0:0:0:0:0:1', 24, 128)).toBe(prefixKey('2001:db8::1', 24, 128));
    expect(prefixKey('fe80::1%eth0', 24, 64)).toBe(prefixKey('fe80::2', 24, 64));
    expect(prefixKey('10.1.2.3', 32, 56)).not.toBe(prefixKey('10.1.2.4', 32, 56));
    expect(prefixKey('10.1.2.3', 8, 56)).toBe(prefixKey('10.200.2.4', 8, 56));
    expect(prefixKey('not-an-address', 24, 56)).toBe('not-an-address');
  });
});

describe('RefusalLimiter', () => {
  it('sends the budget, then slips every 2nd and drops the rest; the budget refills with time', () => {
    const l = new RefusalLimiter(OPTS);
    const at0 = Array.from({ length: 10 }, () => l.decide('198.51.100.1', 1000));
    expect(at0).toEqual(['send', 'send', 'send', 'send', 'drop', 'slip', 'drop', 'slip', 'drop', 'slip']);
    // Half a second later: 2 tokens back.
    expect([l.decide('198.51.100.7', 1500), l.decide('198.51.100.7', 1500), l.decide('198.51.100.7', 1500)]).toEqual(['send', 'send', 'drop']);
    // Another prefix has its own budget.
    expect(l.decide('198.51.101.1', 1500)).toBe('send');
    // A clock step backwards refills nothing.
    expect(l.decide('198.51.100.7', 500)).not.toBe('send');
  });

  it('slip 0 drops everything past the budget; per_second 0 limits nothing', () => {
    const drop = new RefusalLimiter({ ...OPTS, slip: 0 });
    expect(Array.from({ length: 8 }, () => drop.decide('192.0.2.1', 0)).filter((d) => d === 'slip')).toEqual([]);
    const off = new RefusalLimiter({ ...OPTS, perSecond: 0 });
    expect(new Set(Array.from({ length: 100 }, () => off.decide('192.0.2.1', 0)))).toEqual(new Set(['send']));
    expect(off.size).toBe(0);
  });

  it('remembers at most maxPrefixes prefixes, forgetting the least recently used', () => {
    const l = new RefusalLimiter(OPTS);
    for (let i = 0; i < 4; i++) l.decide('203.0.113.1', 0); // exhaust one prefix
    expect(l.decide('203.0.113.1', 0)).not.toBe('send');
    for (let i = 0; i < 10_000; i++) l.decide(`10.${i >> 8}.${i & 255}.1`, 0);
    expect(l.size).toBe(OPTS.maxPrefixes);
    // Forgotten: it starts again with a full budget (as a new prefix would).
    expect(l.decide('203.0.113.1', 0)).toBe('send');
  });
});
