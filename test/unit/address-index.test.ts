// The address index (src/sessions/address-index.ts) against a naive reference built on node:net's BlockList:
// random CIDR sets (IPv4, IPv6 and IPv4-mapped, nested and overlapping), random adds and removes; every
// lookup and every overlap query must agree with the reference. Seeded: a failure names its seed.
import { BlockList, isIP } from 'node:net';
import { describe, expect, it } from 'vitest';
import { AddressIndex, addressKey, cidrKey } from '../../src/sessions/address-index.js';

/** mulberry32: a small seeded PRNG, so a failing case can be replayed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface Item { readonly id: number; readonly cidr: string; readonly list: BlockList; readonly len: number; readonly network: string; readonly v4: boolean }

// Addresses crowd into small neighbourhoods so that nesting and overlap are common.
function randomAddress(r: () => number): { text: string; v4: boolean } {
  const pick = r();
  const n = (max: number): number => Math.floor(r() * max);
  if (pick < 0.45) return { text: `10.0.${n(4)}.${n(256)}`, v4: true };
  if (pick < 0.6) return { text: `::ffff:10.0.${n(4)}.${n(256)}`, v4: false };
  if (pick < 0.95) return { text: `2001:db8::${n(4).toString(16)}:${n(65536).toString(16)}`, v4: false };
  return { text: `fe80::${n(16).toString(16)}`, v4: false };
}

function randomCidr(r: () => number): { text: string; v4: boolean; prefix: number } {
  const a = randomAddress(r);
  const max = a.v4 ? 32 : 128;
  const roll = r();
  // Mostly long prefixes (hosts, small ranges), sometimes a wide one and rarely everything.
  const prefix = roll < 0.02 ? 0 : roll < 0.1 ? Math.floor(r() * max) : max - Math.floor(r() * 12);
  return { ...a, prefix: Math.max(0, prefix) };
}

function item(id: number, c: { text: string; v4: boolean; prefix: number }): Item {
  const list = new BlockList();
  list.addSubnet(c.text, c.prefix, c.v4 ? 'ipv4' : 'ipv6');
  const k = cidrKey(`${c.text}/${c.prefix}`)!;
  // The network address, as text in the same family, for the reference overlap test.
  const network = k.key.map((g) => g.toString(16)).join(':');
  return { id, cidr: `${c.text}/${c.prefix}`, list, len: k.len, network, v4: c.v4 };
}

const family = (text: string): 'ipv4' | 'ipv6' => (text.includes(':') ? 'ipv6' : 'ipv4');

function naiveLookup(items: readonly Item[], address: string, accept: (i: Item) => boolean): Item | undefined {
  let best: Item | undefined;
  for (const i of items) if (accept(i) && i.list.check(address, family(address)) && (best === undefined || i.len > best.len)) best = i;
  return best;
}

/** Two CIDRs overlap exactly when one contains the other's network address. */
const overlap = (a: Item, b: Item): boolean => a.list.check(b.network, 'ipv6') || b.list.check(a.network, 'ipv6');

describe('AddressIndex', () => {
  it.each([1, 2, 3, 4, 5, 6, 7, 8])('agrees with a BlockList reference on random CIDR sets, adds and removes (seed %i)', (seed) => {
    const r = rng(seed);
    const index = new AddressIndex<Item>();
    let held: Item[] = [];
    let nextId = 0;
    let checked = 0;
    for (let step = 0; step < 400; step++) {
      if (held.length > 0 && r() < 0.3) {
        const victim = held[Math.floor(r() * held.length)]!;
        const k = cidrKey(victim.cidr)!;
        expect(index.remove(k.key, k.len, victim), `seed ${seed} step ${step}: remove ${victim.cidr}`).toBe(true);
        held = held.filter((i) => i !== victim);
      } else {
        const added = item(nextId++, randomCidr(r));
        const k = cidrKey(added.cidr)!;
        index.add(k.key, k.len, added);
        held.push(added);
      }
      // Some items do not count (as expired sessions do not), differently per step.
      const odd = r() < 0.5;
      const accept = (i: Item): boolean => !odd || i.id % 3 !== 0;
      for (let q = 0; q < 8; q++) {
        const address = randomAddress(r).text;
        const want = naiveLookup(held, address, accept);
        const got = index.lookup(addressKey(address)!, accept);
        // Equal-length prefixes of different items may both cover it: any of the longest is right.
        const right = got?.len === want?.len && (got === undefined || (accept(got) && got.list.check(address, family(address))));
        if (!right) expect.fail(`seed ${seed} step ${step}: lookup ${address} gave ${got?.cidr}, want ${want?.cidr}; held ${held.map((i) => i.cidr).join(' ')}`);
      }
      for (let q = 0; q < 4; q++) {
        const probe = item(-1, randomCidr(r));
        const k = cidrKey(probe.cidr)!;
        const got = index.overlapping(k.key, k.len, accept);
        const want = held.find((i) => accept(i) && overlap(i, probe));
        const right = got === undefined ? want === undefined : accept(got) && overlap(got, probe);
        if (!right) expect.fail(`seed ${seed} step ${step}: overlap ${probe.cidr} gave ${got?.cidr}, want ${want?.cidr}; held ${held.map((i) => i.cidr).join(' ')}`);
        checked++;
      }
    }
    expect(checked).toBe(400 * 4);
    // Removing everything leaves an empty index.
    for (const i of held) {
      const k = cidrKey(i.cidr)!;
      expect(index.remove(k.key, k.len, i)).toBe(true);
    }
    expect(index.lookup(addressKey('10.0.0.1')!, () => true)).toBeUndefined();
    expect(index.overlapping([0, 0, 0, 0, 0, 0, 0, 0], 0, () => true)).toBeUndefined();
  });

  it('parses addresses as node:net does: compressed, full, mixed, IPv4-mapped, with a zone; rejects junk', () => {
    expect(addressKey('10.1.2.3')).toEqual([0, 0, 0, 0, 0, 0xffff, 0x0a01, 0x0203]);
    expect(addressKey('::ffff:10.1.2.3')).toEqual(addressKey('10.1.2.3'));
    expect(addressKey('::ffff:a01:203')).toEqual(addressKey('10.1.2.3'));
    expect(addressKey('::')).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    expect(addressKey('::1')).toEqual([0, 0, 0, 0, 0, 0, 0, 1]);
    expect(addressKey('1::')).toEqual([1, 0, 0, 0, 0, 0, 0, 0]);
    expect(addressKey('1:2:3:4:5:6:7::')).toEqual([1, 2, 3, 4, 5, 6, 7, 0]);
    expect(addressKey('2001:DB8:0:0:0:0:0:FF')).toEqual([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xff]);
    expect(addressKey('fe80::1%eth0')).toEqual([0xfe80, 0, 0, 0, 0, 0, 0, 1]);
    for (const junk of ['', '10.0.0', '10.0.0.256', '010.0.0.1', '10.0.0.1%eth0', '::ffff:010.0.0.1', '1:2:3:4:5:6:7:8:9', '1::2::3', 'example.com', '::g']) expect(addressKey(junk), junk).toBeUndefined();
    expect(cidrKey('10.0.0.5/24')).toEqual({ key: [0, 0, 0, 0, 0, 0xffff, 0x0a00, 0], len: 120 });
    expect(cidrKey('10.0.0.0/33')).toBeUndefined();
    expect(cidrKey('::/0')).toEqual({ key: [0, 0, 0, 0, 0, 0, 0, 0], len: 0 });
  });

  it('accepts exactly the strings node:net accepts as IP addresses (random strings of address characters)', () => {
    const r = rng(99);
    const alphabet = '0123456789abcdef:.%';
    let accepted = 0;
    for (let i = 0; i < 20_000; i++) {
      // Start from a valid address and mutate it, or build from scratch: both kinds hit edge cases.
      let text = r() < 0.5 ? randomAddress(r).text : '';
      const edits = Math.floor(r() * 4);
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(r() * (text.length + 1));
        const ch = alphabet[Math.floor(r() * alphabet.length)]!;
        text = r() < 0.5 ? text.slice(0, at) + ch + text.slice(at) : text.slice(0, at) + text.slice(at + 1);
      }
      const ours = addressKey(text) !== undefined;
      if (ours !== (isIP(text) !== 0)) expect.fail(`"${text}": addressKey ${ours ? 'accepts' : 'rejects'}, isIP says ${isIP(text)}`);
      if (ours) accepted++;
    }
    expect(accepted).toBeGreaterThan(1000);
  });

  it('takes the longest covering prefix, the first added among equals, and skips items the caller does not count', () => {
    const index = new AddressIndex<string>();
    const add = (cidr: string, item: string): void => { const k = cidrKey(cidr)!; index.add(k.key, k.len, item); };
    add('10.0.0.0/8', 'wide');
    add('10.1.0.0/16', 'mid');
    add('10.1.2.3', 'host');
    add('10.1.2.3/32', 'host-later');
    const at = (a: string, accept: (s: string) => boolean = () => true): string | undefined => index.lookup(addressKey(a)!, accept);
    expect(at('10.1.2.3')).toBe('host');
    expect(at('10.1.2.3', (s) => s !== 'host')).toBe('host-later');
    expect(at('10.1.2.3', (s) => !s.startsWith('host'))).toBe('mid');
    expect(at('10.9.9.9')).toBe('wide');
    expect(at('11.0.0.1')).toBeUndefined();
  });
});
