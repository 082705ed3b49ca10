import { deflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { charStats } from '../../scoring/lexical.js';
import {
  blocksSince, bytesPerMinute, estimateNovelBytes, fanoutSignal, newSessionState, noteAge, noteBlock, nxSignal, observeForwarded, QTYPE_CHOICE_BYTES, RARE_QTYPE_CHOICE_BYTES, sessionNovelBytes, volumeSignal,
  type SessionState, type WindowParams,
} from '../../scoring/window.js';
import { base32, base64url, dictionary, hex, prng } from '../../fixtures/corpora/generate.mjs';

const P: WindowParams = {
  fanout_window_ms: 600_000, fanout_high: 60, volume_idle_ms: 86_400_000, volume_high_bytes: 1024, young_domain_days: 30,
  max_domains_per_session: 256, max_names_per_session: 4096, max_grams_per_session: 16_384, repeat_floor_ms: 30_000,
};

function send(state: SessionState, registrable: string, sub: string, atMs: number, p = P, rcode = 0): void {
  observeForwarded(state, { registrable, subdomain: sub, alphabet: charStats(sub).alphabet, atMs, rcode }, p);
}

describe('a known name asked with a new query type', () => {
  const sendType = (s: SessionState, sub: string, qtype: number, atMs: number) =>
    observeForwarded(s, { registrable: 'chan.example', subdomain: sub, alphabet: charStats(sub).alphabet, atMs, rcode: 0, qtype }, P);

  it('costs QTYPE_CHOICE_BYTES once per (name, type), A / AAAA / HTTPS free, a repeat of a pair nothing', () => {
    const s = newSessionState();
    sendType(s, 'mail', 1, 0);
    const first = s.domains['chan.example']!.volumeBytes;
    const fresh = s.freshVolumeBytes;
    expect(first).toBeGreaterThan(0);
    for (const t of [28, 65, 1, 28]) sendType(s, 'mail', t, 1); // A, AAAA, HTTPS: what browsers and agents ask together
    expect(s.domains['chan.example']!.volumeBytes).toBe(first);
    sendType(s, 'mail', 15, 2); // MX
    sendType(s, 'mail', 16, 3); // TXT
    expect(s.domains['chan.example']!.volumeBytes).toBeCloseTo(first + 2 * QTYPE_CHOICE_BYTES, 9);
    expect(s.freshVolumeBytes).toBeCloseTo(fresh + 2 * QTYPE_CHOICE_BYTES, 9);
    expect(s.allVolumeBytes).toBeGreaterThan(0);
    for (let i = 0; i < 20; i++) sendType(s, 'mail', 16, 10 + i); // the same pair again: a repeat
    expect(s.domains['chan.example']!.volumeBytes).toBeCloseTo(first + 2 * QTYPE_CHOICE_BYTES, 9);
  });

  it('a private or unassigned type costs RARE_QTYPE_CHOICE_BYTES (its 16 bits), once per pair', () => {
    const s = newSessionState();
    sendType(s, 'y', 1, 0);
    const before = s.domains['chan.example']!.volumeBytes;
    for (let i = 0; i < 10; i++) sendType(s, 'y', 65280 + i, i + 1);
    for (let i = 0; i < 10; i++) sendType(s, 'y', 65280 + i, i + 20); // the same pairs again
    expect(s.domains['chan.example']!.volumeBytes - before).toBeCloseTo(10 * RARE_QTYPE_CHOICE_BYTES, 9);
  });

  it('a name cycled through every known type pays for each: 29 types after the first cost ~21 B', () => {
    const s = newSessionState();
    const types = [2, 5, 6, 12, 13, 15, 16, 29, 33, 35, 37, 39, 43, 44, 46, 47, 48, 50, 51, 52, 53, 59, 60, 61, 64, 99, 255, 256, 257];
    sendType(s, 'x', 1, 0);
    const before = s.domains['chan.example']!.volumeBytes;
    types.forEach((t, i) => sendType(s, 'x', t, i + 1));
    expect(s.domains['chan.example']!.volumeBytes - before).toBeCloseTo(types.length * QTYPE_CHOICE_BYTES, 9);
  });
});

describe('repeats of known names (the repeat channel)', () => {
  const CODEBOOK = ['ab', 'cd', 'ef', 'gh', 'ij', 'kl', 'mn', 'op', 'qr', 'st', 'uv', 'wx', 'yz', 'ba', 'dc', 'fe'];
  const sendA = (s: SessionState, sub: string, atMs: number, extra: { platform?: boolean; internal?: boolean; qtype?: number } = {}) =>
    observeForwarded(s, { registrable: 'cbook.example', subdomain: sub, alphabet: charStats(sub).alphabet, atMs, rcode: 0, qtype: extra.qtype ?? 1, platform: extra.platform === true, internal: extra.internal === true }, P);

  it('a codebook of 16 names asked at random at wire speed (TTL 0) costs ~4 bits a query, new labels nothing more', () => {
    const s = newSessionState();
    const r = prng(16);
    for (const c of CODEBOOK) sendA(s, c, 0);
    const volume = s.domains['cbook.example']!.volumeBytes;
    expect(s.repeatBytes).toBe(0);
    for (let i = 0; i < 1000; i++) sendA(s, CODEBOOK[r.bytes(1)[0]! & 15]!, 100 + i * 10); // 1000 nibbles = 500 B of secret
    expect(s.repeatBytes).toBeGreaterThan(460); // what the choices carry, give or take the model's learning cost
    expect(s.repeatBytes).toBeLessThan(540);
    expect(s.domains['cbook.example']!.volumeBytes).toBe(volume); // the label budgets still see nothing new
  });

  it('one name polled again and again costs nothing', () => {
    const polled = newSessionState();
    sendA(polled, 'api', 0);
    for (let i = 1; i <= 500; i++) sendA(polled, 'api', i * 1000); // TTL 0, every second
    // only the type model's learning cost (it grows like log2 of the repeats): 500 polls, not a byte and a half
    expect(polled.repeatBytes).toBeLessThan(1.5);
  });

  it('the query type carries nothing for free: {bare domain, one name} × {A, AAAA, HTTPS} at wire speed, or a bare domain with random types', () => {
    const six = newSessionState();
    const r = prng(21);
    const types = [1, 28, 65];
    const send6 = (x: number, atMs: number) => observeForwarded(six, { registrable: 'cb.example', subdomain: x % 2 === 0 ? '' : 'x', alphabet: 'letters', atMs, rcode: 0, qtype: types[(x >> 1) % 3]! }, P);
    for (let i = 0; i < 1000; i++) send6(r.bytes(1)[0]! % 6, i * 10); // log2(6) = 2.6 bits a query: 323 B of secret
    expect(six.repeatBytes).toBeGreaterThan(250);
    const random = newSessionState();
    for (let i = 0; i < 200; i++) {
      const [hi, lo] = r.bytes(2);
      const qtype = 1000 + (((hi! << 8) | lo!) % 60_000); // 16 bits a query, 400 B of secret
      observeForwarded(random, { registrable: 'cb.example', subdomain: '', alphabet: 'letters', atMs: i * 10, rcode: 0, qtype }, P);
    }
    expect(random.repeatBytes).toBeGreaterThan(390);
  });

  it('the first repeat of a bare domain is charged, and a state restored from JSON cannot be fooled by Object.prototype', () => {
    const s = newSessionState();
    const bare = (d: string, atMs: number) => observeForwarded(s, { registrable: d, subdomain: '', alphabet: 'letters', atMs, rcode: 0, qtype: 1 }, P);
    sendA(s, 'www', 0);
    bare('b.example', 0);
    bare('b.example', 10); // left again 10 ms later: nothing cached
    expect(s.repeatBytes).toBeGreaterThan(0);
    const restored = JSON.parse(JSON.stringify(s)) as SessionState; // plain objects again, with a prototype
    const before = restored.repeatBytes;
    for (const c of CODEBOOK.slice(0, 4)) sendA(restored, c, 100);
    for (let i = 0; i < 50; i++) sendA(restored, i % 2 === 0 ? 'constructor' : '__proto__', 200 + i);
    expect(restored.domains['cbook.example']!.volumeBytes).toBeGreaterThan(0);
    expect(Number.isFinite(restored.repeatBytes)).toBe(true);
    expect(restored.repeatBytes).toBeGreaterThan(before + 3); // ~1 bit a query between the two
    expect(Object.hasOwn(restored.domains['cbook.example']!.symbols, 'constructor')).toBe(true);
    expect(typeof restored.domains['cbook.example']!.symbols['constructor']).toBe('number');
  });

  it('paced at its answers\' TTL (each name leaves again only once its 30 s answer expired), a codebook pays the same, for an old domain too', () => {
    for (const ageDays of [undefined, 4000]) {
      const s = newSessionState();
      if (ageDays !== undefined) noteAge(s, 'cbook.example', ageDays, 0, P);
      const r = prng(17);
      for (const c of CODEBOOK) sendA(s, c, 0);
      const last = new Map(CODEBOOK.map((c) => [c, 0]));
      let repeats = 0;
      for (let t = 1; t < 4 * 3_600_000; t += 2_000) {
        const c = CODEBOOK[r.bytes(1)[0]! & 15]!;
        if (t - last.get(c)! < 30_000) continue; // still cached: a hit, nothing leaves
        last.set(c, t);
        sendA(s, c, t);
        repeats++;
      }
      expect(repeats).toBeGreaterThan(1500);
      expect(s.repeatBytes).toBeGreaterThan(repeats * 0.4); // ~4 bits a departure: the lifetime budget (432–448) holds it
    }
  });

  it('names in steady proportions cost little: 9 in 10 departures of one of 4 names cost under a bit each', () => {
    const s = newSessionState();
    const r = prng(18);
    for (const c of ['api', 'auth', 'cdn', 'www']) sendA(s, c, 0);
    for (let i = 1; i <= 1000; i++) {
      const x = r.bytes(1)[0]!;
      sendA(s, x < 230 ? 'api' : ['auth', 'cdn', 'www'][x % 3]!, i * 100);
    }
    expect(s.repeatBytes * 8).toBeLessThan(1000 * 0.75);
    expect(s.repeatBytes * 8).toBeGreaterThan(1000 * 0.4); // the entropy of those proportions: ~0.62 bits
  });

  it('the choice of domain: 16 bare domains, or one name under each, asked at wire speed (TTL 0) cost ~4 bits a query', () => {
    for (const sub of ['', 'www']) {
      const s = newSessionState();
      const r = prng(19);
      const send = (d: number, atMs: number) => observeForwarded(s, { registrable: `${CODEBOOK[d]}-cb.example`, subdomain: sub, alphabet: 'letters', atMs, rcode: 0, qtype: 1 }, P);
      for (let d = 0; d < 16; d++) send(d, 0);
      expect(s.repeatBytes).toBe(0);
      for (let i = 0; i < 1000; i++) send(r.bytes(1)[0]! & 15, 100 + i * 10);
      expect(s.repeatBytes).toBeGreaterThan(460);
      expect(s.repeatBytes).toBeLessThan(540);
    }
  });

  it('the choice of domain is charged only for a repeat that left again within repeat_floor_ms (benign sessions re-ask tens of domains as answers expire)', () => {
    const s = newSessionState();
    const r = prng(20);
    const last = new Map<number, number>();
    for (let t = 0; t < 3_600_000; t += 1_000) {
      const d = r.bytes(1)[0]! % 30;
      if (t - (last.get(d) ?? -Infinity) < 60_000) continue; // a 60 s answer still cached: nothing leaves
      last.set(d, t);
      observeForwarded(s, { registrable: `site${d}.example`, subdomain: '', alphabet: 'letters', atMs: t, rcode: 0, qtype: 1 }, P);
    }
    expect(s.left).toBeGreaterThan(1000);
    expect(s.leftDomains).toBe(30);
    expect(s.repeatBytes).toBe(0);
  });

  it('a flood of free platform names cannot fill the model and make repeats free (review: 10,000 B out after 4,096 of them)', () => {
    const s = newSessionState();
    const bare = (registrable: string, qtype: number, atMs: number, platform = false) => observeForwarded(s, { registrable, subdomain: '', alphabet: 'letters', atMs, rcode: 0, qtype, platform }, P);
    let t = 0;
    for (let i = 0; i < 5000; i++) bare(`t${i}.github.io`, 1 + (i % 30), t++, true); // platform tenants: never charged
    expect(s.symbolCount).toBe(0); // and they took no room
    const r = prng(22);
    for (let i = 0; i < 1000; i++) bare(`${CODEBOOK[r.bytes(1)[0]! & 15]}-cb.example`, 1, t += 10); // 500 B of secret
    expect(s.repeatBytes).toBeGreaterThan(400);
  });

  it('evicting the attacker\'s windows with floods of other domains does not wipe the charge (review: unbounded at 256 a nibble)', () => {
    const p = { ...P, max_domains_per_session: 16 };
    const s = newSessionState();
    const bare = (registrable: string, atMs: number, platform = false) => observeForwarded(s, { registrable, subdomain: '', alphabet: 'letters', atMs, rcode: 0, qtype: 1, platform }, p);
    const r = prng(23);
    let t = 0;
    let filler = 0;
    for (let i = 0; i < 1000; i++) {
      bare(`${CODEBOOK[r.bytes(1)[0]! & 15]}-cb.example`, t += 10);
      for (let f = 0; f < 32; f++) bare(`f${filler++}.github.io`, t++, true); // free, never repeated: evicts the codebook's windows
    }
    expect(s.evictedCount).toBeGreaterThan(0);
    expect(s.repeatBytes).toBeGreaterThan(400); // each return is charged as a domain the model had forgotten
  });

  it('platform apexes and internal suffixes are not charged', () => {
    for (const extra of [{ platform: true }, { internal: true }]) {
      const s = newSessionState();
      for (const c of CODEBOOK) sendA(s, c, 0, extra);
      for (let i = 0; i < 200; i++) sendA(s, CODEBOOK[i % 16]!, 10 + i, extra);
      expect(s.repeatBytes).toBe(0);
    }
  });
});

describe('information volume', () => {
  it('counts only unique label content', () => {
    const s = newSessionState();
    send(s, 'example.com', 'www', 0);
    const once = s.domains['example.com']!.volumeBytes;
    for (let i = 1; i <= 100; i++) send(s, 'example.com', 'www', i * 1000);
    expect(once).toBeGreaterThan(0);
    expect(s.domains['example.com']!.volumeBytes).toBe(once);
    // one distinct name, decayed over the 100 s since it was first seen (half-life 600 s)
    expect(s.domains['example.com']!.fanout).toBeCloseTo(Math.pow(2, -100 / 600), 9);
  });

  it.each([
    ['hex', hex],
    ['base32', base32],
    ['base64url', base64url],
    ['dictionary', dictionary],
  ] as const)('the estimate tracks deflate on %s exfiltration within 0.95–1.4×', (_name, enc) => {
    const r = prng(9);
    const s = newSessionState();
    const subs: string[] = [];
    for (let i = 0; i < 150; i++) {
      const sub = `${i.toString(36).padStart(3, '0')}.${enc(r.bytes(8)).toLowerCase()}`;
      subs.push(sub);
      send(s, 'xfl-cdn.net', sub, i * 60_000);
    }
    const deflated = deflateRawSync(subs.sort().join('\n')).length;
    const ratio = s.domains['xfl-cdn.net']!.volumeBytes / deflated;
    expect(ratio).toBeGreaterThan(0.95);
    expect(ratio).toBeLessThan(1.4);
  });

  it('a repeated pattern is cheap: known 4-grams become one back-reference', () => {
    const s = newSessionState();
    send(s, 'googlevideo.com', 'rr1---sn-4g5e6nzz', 0);
    const w = s.domains['googlevideo.com']!;
    expect(estimateNovelBytes(w, 'rr1---sn-4g5e6nzz', 'alnum')).toBe(2.5);
    expect(estimateNovelBytes(w, 'rr2---sn-4g5e6nzz', 'alnum')).toBeLessThan(6);
    expect(estimateNovelBytes(undefined, 'abcd', 'hex')).toBeCloseTo(4 * 0.56, 5);
  });

  it('starts afresh after the domain was idle for volume_idle_ms', () => {
    const s = newSessionState();
    send(s, 'x.net', 'aaaa1111', 0);
    expect(s.domains['x.net']!.volumeBytes).toBeGreaterThan(0);
    send(s, 'x.net', 'mmmm2222', P.volume_idle_ms + 1);
    expect(s.domains['x.net']!.volumeBytes).toBeCloseTo(8 * 0.68, 5); // only the new name (base32 literals)
  });

  it('sums volume over young domains only', () => {
    const s = newSessionState();
    noteAge(s, 'young.net', 3, 0, P);
    noteAge(s, 'old.net', 900, 0, P);
    send(s, 'young.net', 'abcdefgh', 1);
    send(s, 'old.net', 'abcdefgh', 1);
    expect(s.youngVolumeBytes).toBeCloseTo(s.domains['young.net']!.volumeBytes, 9);
    noteAge(s, 'young.net', undefined, 2, P); // a lookup that missed its budget keeps what was known
    expect(s.domains['young.net']).toMatchObject({ ageDays: 3, young: true });
    noteAge(s, 'young.net', 45, 2, P); // age learnt later: no longer young
    expect(s.youngVolumeBytes).toBe(0);
  });
});

describe('session-wide accounts (issue 14)', () => {
  it('fresh domains (age unknown or young, not established) sum into freshVolumeBytes; old and platform ones do not', () => {
    const s = newSessionState();
    const r = prng(41);
    noteAge(s, 'unknown.net', undefined, 0, P);
    noteAge(s, 'young.net', 3, 0, P);
    noteAge(s, 'old.net', 900, 0, P);
    noteAge(s, 'tenant.cloudfront.net', undefined, 0, P, true);
    for (const d of ['unknown.net', 'young.net', 'old.net', 'tenant.cloudfront.net']) send(s, d, hex(r.bytes(12)), 1);
    expect(s.freshVolumeBytes).toBeCloseTo(s.domains['unknown.net']!.sessionBytes + s.domains['young.net']!.sessionBytes, 9);
    expect(s.freshVolumeBytes).toBeGreaterThan(20);
  });

  it('a label already sent to another domain costs only the choice among known labels; new content costs in full', () => {
    const s = newSessionState();
    const hosts = ['www', 'api', 'cdn', 'static', 'img', 'docs', 'auth', 'mail', 'blog', 'login'];
    for (let d = 0; d < 100; d++) for (const h of hosts) send(s, `site${d}.example`, h, d);
    // 1,000 names, but only ten labels: well under a byte each after the first domain
    expect(s.freshVolumeBytes).toBeLessThan(500);
    const known = sessionNovelBytes(s, 'www', 'letters', 3 * 0.62);
    expect(known).toBeLessThan(0.5);
    const r = prng(42);
    const fresh = hex(r.bytes(8));
    expect(sessionNovelBytes(s, fresh, 'hex', estimateNovelBytes(undefined, fresh, 'hex'))).toBeCloseTo(16 * 0.56, 9);
    // never more than the per-domain estimate
    expect(sessionNovelBytes(s, `${fresh}.www`, 'hex', 1)).toBe(1);
  });

  it('bytes a minute: settles at the rate, decays when quiet, ignores platform names', () => {
    const s = newSessionState();
    const r = prng(43);
    // 16 hex chars (≈ 9 B) a second for five minutes ≈ 540 B a minute
    for (let i = 0; i < 300; i++) observeForwarded(s, { registrable: `d${i % 10}.net`, subdomain: hex(r.bytes(8)), alphabet: 'hex', atMs: i * 1000, rcode: 0 }, P);
    expect(bytesPerMinute(s, 300_000)).toBeGreaterThan(480);
    expect(bytesPerMinute(s, 300_000)).toBeLessThan(600);
    expect(bytesPerMinute(s, 600_000)).toBeLessThan(5);
    const before = s.rateBytes;
    observeForwarded(s, { registrable: 't.cloudfront.net', subdomain: hex(r.bytes(8)), alphabet: 'hex', atMs: 299_999, rcode: 0, platform: true }, P);
    expect(s.rateBytes).toBe(before);
  });
});

describe('fan-out, NXDOMAIN ratio and blocks', () => {
  it('fan-out counts distinct names and decays with half-life fanout_window_ms', () => {
    const s = newSessionState();
    for (let i = 0; i < 60; i++) send(s, 'cdn.example', `n${i}`, i);
    expect(fanoutSignal(s.domains['cdn.example'], 60, P, 1).value).toBeCloseTo(1, 2);
    const later = fanoutSignal(s.domains['cdn.example'], 60 + 2 * P.fanout_window_ms, P, 1);
    expect(later.value).toBe(0); // 60 → 15 after two half-lives: at the ramp's start
  });

  it('NXDOMAIN ratio needs enough answers', () => {
    const s = newSessionState();
    for (let i = 0; i < 4; i++) send(s, 'a.example', `x${i}`, i, P, 3);
    expect(nxSignal(s, 4, P, 1).value).toBe(0); // 4 answers: below the 5-answer ramp
    for (let i = 4; i < 20; i++) send(s, 'a.example', `x${i}`, i, P, 3);
    const nx = nxSignal(s, 20, P, 1);
    expect(nx.reason).toBe('100% NXDOMAIN');
    expect(nx.value).toBeCloseTo(1, 3);
  });

  it('volume signal ramps from a quarter of volume_high_bytes', () => {
    expect(volumeSignal(undefined, P, 1).value).toBe(0);
  });

  it('remembers at most 16 blocks and counts those in a window', () => {
    const s = newSessionState();
    for (let i = 0; i < 20; i++) noteBlock(s, i * 1000);
    expect(s.blocks).toHaveLength(16);
    expect(blocksSince(s, 17_000)).toBe(3);
  });
});

describe('memory bounds', () => {
  it('a flood of 500,000 unique names cannot grow the state past its bounds', () => {
    const p = { ...P, max_domains_per_session: 64, max_names_per_session: 2000, max_grams_per_session: 8000 };
    const s = newSessionState();
    const r = prng(1);
    for (let i = 0; i < 500_000; i++) send(s, `d${i % 1000}.example`, base32(r.bytes(6)), i, p);
    expect(s.domainCount).toBe(64);
    expect(Object.keys(s.domains)).toHaveLength(64);
    let names = 0;
    let grams = 0;
    for (const k in s.domains) {
      names += Object.keys(s.domains[k]!.names).length;
      grams += Object.keys(s.domains[k]!.grams).length;
    }
    expect(names).toBe(s.nameCount);
    expect(grams).toBe(s.gramCount);
    // the departure times are kept for remembered names only, and the domain model's sums match the windows
    let times = 0;
    let left = 0;
    for (const k in s.domains) {
      times += Object.keys(s.domains[k]!.leftAtMs).length;
      left += s.domains[k]!.left;
    }
    expect(times).toBeLessThanOrEqual(names);
    expect(left).toBe(s.left);
    expect(s.leftDomains).toBe(Object.values(s.domains).filter((w) => w.left > 0).length);
    expect(names).toBeLessThanOrEqual(2000);
    expect(grams).toBeLessThanOrEqual(8000);
    expect(JSON.stringify(s).length).toBeLessThan(400_000);
  }, 60_000);

  it('an attacker domain keeps its volume when a flood of other domains evicts its window', () => {
    const p = { ...P, max_domains_per_session: 16, fanout_window_ms: 1000 };
    const s = newSessionState();
    const r = prng(5);
    for (let i = 0; i < 20; i++) send(s, 'attacker.example', base32(r.bytes(10)), i, p);
    const before = s.domains['attacker.example']!.volumeBytes;
    expect(before).toBeGreaterThan(200);
    // 40 other domains, long after the fan-out window: the attacker's window is evicted...
    for (let i = 0; i < 40; i++) send(s, `filler${i}.example`, 'www', 10_000 + i, p);
    expect(s.domains['attacker.example']).toBeUndefined();
    // ...and when the attacker comes back, its account is where it was.
    send(s, 'attacker.example', base32(r.bytes(10)), 20_000, p);
    expect(s.domains['attacker.example']!.volumeBytes).toBeGreaterThan(before);
    expect(s.evictedCount).toBe(Object.keys(s.evicted).length);
  });

  it('is plain data: a JSON round trip keeps behaving the same', () => {
    const s = newSessionState();
    send(s, 'x.net', 'abcdefgh', 0);
    const copy = JSON.parse(JSON.stringify(s)) as SessionState;
    send(s, 'x.net', 'abcdefgh', 1);
    send(copy, 'x.net', 'abcdefgh', 1);
    send(s, 'x.net', 'zzzz9999', 2);
    send(copy, 'x.net', 'zzzz9999', 2);
    expect(copy.domains['x.net']!.volumeBytes).toBe(s.domains['x.net']!.volumeBytes);
  });
});
