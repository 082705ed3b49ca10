// shardOf() is the JavaScript twin of the kernel program in src/fleet/native/reuseport.c: tests and the
// benchmark use it to predict which worker a client address reaches (test/process/workers.test.ts checks
// the kernel agrees for IPv4 and ::1). Here: the IPv6 folding, and that the spread is even.
import { describe, expect, it } from 'vitest';
import { shardOf } from '../../src/fleet/shard.js';

describe('shardOf', () => {
  it('folds an IPv6 address into the XOR of its four 32-bit words, however it is written', () => {
    // 2001:db8::1 → 0x20010db8 ^ 0 ^ 0 ^ 0x00000001 = 0x20010db9, the IPv4 address 32.1.13.185.
    for (const n of [2, 3, 4, 7, 64]) {
      const expected = shardOf('32.1.13.185', n);
      expect(shardOf('2001:db8::1', n)).toBe(expected);
      expect(shardOf('2001:0db8:0000:0000:0000:0000:0000:0001', n)).toBe(expected);
      expect(shardOf('2001:DB8:0:0::1', n)).toBe(expected);
      expect(shardOf('::1', n)).toBe(shardOf('0.0.0.1', n));
    }
  });

  it('spreads consecutive addresses evenly over the workers', () => {
    for (const n of [2, 3, 4]) {
      const counts = new Array<number>(n).fill(0);
      for (let i = 0; i < 4096; i++) counts[shardOf(`10.0.${i >> 8}.${i & 255}`, n)]!++;
      for (const c of counts) expect(Math.abs(c - 4096 / n)).toBeLessThan(4096 / n * 0.1);
    }
  });

  it('with one worker, every address is worker 0', () => {
    expect(shardOf('192.0.2.1', 1)).toBe(0);
    expect(shardOf('2001:db8::5', 1)).toBe(0);
  });
});
