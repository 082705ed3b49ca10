// Response-rate limiting of REFUSED answers over UDP, in the manner of BIND's and NSD's RRL: each source
// prefix (/24 IPv4, /56 IPv6 by default) has a token budget per second; past it every Nth refusal is
// "slipped" (a minimal TC=1 reply, so a real client retries over TCP) and the rest are dropped. A spoofed
// source then cannot turn us into an amplifier against its victim. Owns the prefix table, bounded in size
// (least recently used prefix forgotten first), so memory is constant under any number of sources.
// Never decides who is refused, never encodes a reply, never looks at TCP (a handshake proves the source).
import { isIPv4 } from 'node:net';

export interface RefusalLimitOptions {
  /** Full REFUSED answers per prefix per second (also the burst); 0 turns limiting off. */
  readonly perSecond: number;
  /** Past the budget, every slip-th refusal is a TC=1 slip, the rest dropped; 0 drops them all. */
  readonly slip: number;
  readonly ipv4Prefix: number;
  readonly ipv6Prefix: number;
  /** Prefixes remembered at once. */
  readonly maxPrefixes: number;
}

export type RefusalDecision = 'send' | 'slip' | 'drop';

interface Bucket {
  tokens: number;
  atMs: number;
  /** Refusals past the budget since it last had a token: picks which one slips. */
  over: number;
}

export class RefusalLimiter {
  readonly #opts: RefusalLimitOptions;
  // A Map keeps insertion order: re-inserting on use makes its first key the least recently used.
  readonly #buckets = new Map<string, Bucket>();

  constructor(opts: RefusalLimitOptions) {
    this.#opts = opts;
  }

  get size(): number {
    return this.#buckets.size;
  }

  /** What to do with one REFUSED answer for `address` at `nowMs`. */
  decide(address: string, nowMs: number): RefusalDecision {
    const { perSecond, slip, maxPrefixes } = this.#opts;
    if (perSecond === 0) return 'send';
    const key = prefixKey(address, this.#opts.ipv4Prefix, this.#opts.ipv6Prefix);
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= maxPrefixes) this.#buckets.delete(this.#buckets.keys().next().value!);
      bucket = { tokens: perSecond, atMs: nowMs, over: 0 };
    } else {
      this.#buckets.delete(key);
      // A clock step backwards refills nothing (and takes nothing).
      bucket.tokens = Math.min(perSecond, bucket.tokens + (Math.max(0, nowMs - bucket.atMs) * perSecond) / 1000);
      bucket.atMs = nowMs;
    }
    this.#buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      bucket.over = 0;
      return 'send';
    }
    bucket.over++;
    return slip > 0 && bucket.over % slip === 0 ? 'slip' : 'drop';
  }
}

/** The source prefix an address is limited by: "4:<masked address>" or "6:<masked groups>"; unparsable ones as themselves. */
export function prefixKey(address: string, ipv4Prefix: number, ipv6Prefix: number): string {
  // An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d: the same client, the same prefix.
  const v4 = address.startsWith('::ffff:') && isIPv4(address.slice(7)) ? address.slice(7) : address;
  const n = ipv4Number(v4);
  if (n !== undefined) {
    const mask = ipv4Prefix === 0 ? 0 : (0xffffffff << (32 - ipv4Prefix)) >>> 0;
    return `4:${(n & mask) >>> 0}`;
  }
  const groups = ipv6Groups(address);
  if (groups === undefined) return address;
  let bits = ipv6Prefix;
  const out: string[] = [];
  for (const g of groups) {
    const keep = Math.max(0, Math.min(16, bits));
    out.push((keep === 0 ? 0 : g & ((0xffff << (16 - keep)) & 0xffff)).toString(16));
    bits -= 16;
  }
  return `6:${out.join(':')}`;
}

function ipv4Number(address: string): number | undefined {
  const parts = address.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return undefined;
    n = n * 256 + Number(p);
  }
  return n;
}

/** Eight 16-bit groups of an IPv6 address ("::" expanded, an embedded IPv4 tail and a zone index allowed). */
function ipv6Groups(address: string): number[] | undefined {
  const bare = address.split('%')[0]!;
  const halves = bare.split('::');
  if (halves.length > 2) return undefined;
  const parse = (text: string): number[] | undefined => {
    if (text === '') return [];
    const out: number[] = [];
    for (const part of text.split(':')) {
      if (part.includes('.')) {
        const n = ipv4Number(part);
        if (n === undefined) return undefined;
        out.push(Math.floor(n / 0x10000), n & 0xffff);
      } else if (/^[0-9a-fA-F]{1,4}$/.test(part)) out.push(parseInt(part, 16));
      else return undefined;
    }
    return out;
  };
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  if (head === undefined || tail === undefined) return undefined;
  if (halves.length === 1 ? head.length !== 8 : head.length + tail.length > 7) return undefined;
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}
