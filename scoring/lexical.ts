// scoring/lexical.ts — per-query signals from the name alone (or from values handed in): label entropy
// normalised by length and alphabet, encoding shape (char class), name length, query-type risk, domain age.
// Pure: no I/O, no clock; tables are built once at module load, nothing is allocated per query but the Signal.
import type { SplitName } from './names.js';
import type { Signal } from './types.js';

export type Alphabet = 'hex' | 'letters' | 'base32' | 'alnum' | 'base64';

const ALPHABET_SIZE: Readonly<Record<Alphabet, number>> = { hex: 16, letters: 26, base32: 32, alnum: 37, base64: 64 };
const MAX_N = 256;

/**
 * Expected Shannon entropy (bits/char) of n characters drawn uniformly from k symbols, exactly:
 * E[H] = -k · Σ_c P(Binomial(n, 1/k) = c) · (c/n) · log2(c/n). Short strings cannot reach log2(k) — an
 * 8-char random label tops out near 2.8 bits — so raw entropy over-penalises long names and under-penalises
 * short ones; dividing by this expectation puts every length and alphabet on one scale (1 ≈ random).
 */
function expectedEntropy(n: number, k: number): number {
  const p = 1 / k;
  let logPmf = n * Math.log(1 - p); // c = 0
  let sum = 0;
  for (let c = 1; c <= n; c++) {
    logPmf += Math.log((n - c + 1) / c) + Math.log(p / (1 - p));
    const q = c / n;
    sum += Math.exp(logPmf) * q * Math.log2(q);
  }
  return -k * sum;
}

const EXPECTED: Readonly<Record<Alphabet, Float64Array>> = (() => {
  const out = {} as Record<Alphabet, Float64Array>;
  for (const a of Object.keys(ALPHABET_SIZE) as Alphabet[]) {
    const t = new Float64Array(MAX_N + 1);
    for (let n = 1; n <= MAX_N; n++) t[n] = expectedEntropy(n, ALPHABET_SIZE[a]);
    out[a] = t;
  }
  return out;
})();

/** Character statistics of the subdomain (dots excluded), gathered in one pass. */
export interface CharStats {
  readonly length: number;
  /** Shannon entropy in bits/char. */
  readonly entropy: number;
  /** entropy / expected entropy of a random string of this length over `alphabet`. */
  readonly normalised: number;
  readonly alphabet: Alphabet;
  readonly digitRatio: number;
  /** letter↔digit switches per adjacent pair: ≈0.3 for random base32/base64, ≈0.47 hex, ≈0 words. */
  readonly switchRate: number;
  /** Upper case, '_', '+', '/', '=' present (base64 shapes; names normally carry none). */
  readonly base64Chars: boolean;
}

const counts = new Int32Array(128); // reused: scoring is synchronous, one query at a time
const touched = new Int32Array(256);

export function charStats(sub: string): CharStats {
  let n = 0;
  let digits = 0;
  let nonHex = 0;
  let nonB32 = 0;
  let letters = 0;
  let b64 = false;
  let switches = 0;
  let prevKind = 0; // 1 letter, 2 digit
  let distinct = 0;
  for (let i = 0; i < sub.length; i++) {
    let c = sub.charCodeAt(i);
    if (c === 46) continue; // '.'
    if (c > 127) c = 127; // bucket any raw octet
    n++;
    if (counts[c] === 0) touched[distinct++] = c;
    counts[c]!++;
    let kind = 0;
    if (c >= 48 && c <= 57) {
      digits++;
      kind = 2;
      if (c < 50 || c > 55) nonB32++; // base32 digits are 2-7
    } else if (c >= 97 && c <= 122) {
      letters++;
      kind = 1;
      if (c > 102) nonHex++;
    } else {
      nonHex++;
      nonB32++;
      if (c !== 45) b64 = true; // anything but '-' is outside the hostname alphabet
      if (c >= 65 && c <= 90) kind = 1;
    }
    if (kind !== 0 && prevKind !== 0 && kind !== prevKind) switches++;
    if (kind !== 0) prevKind = kind;
  }
  let h = 0;
  for (let j = 0; j < distinct; j++) {
    const c = touched[j]!;
    const q = counts[c]! / n;
    h -= q * Math.log2(q);
    counts[c] = 0;
  }
  // The dominant alphabet, tolerating a few stray characters (a `t1.` tunnel label, a `-`): 5% of the length.
  const stray = n * 0.05;
  const alphabet: Alphabet = b64
    ? 'base64'
    : nonHex <= stray && digits > 0
      ? 'hex'
      : digits <= stray && letters > 0
        ? 'letters'
        : nonB32 <= stray
          ? 'base32'
          : 'alnum';
  const expected = n === 0 ? 1 : EXPECTED[alphabet][n > MAX_N ? MAX_N : n]!;
  return {
    length: n,
    entropy: h,
    normalised: n < 2 ? 0 : h / expected,
    alphabet,
    digitRatio: n === 0 ? 0 : digits / n,
    switchRate: n < 2 ? 0 : switches / (n - 1),
    base64Chars: b64,
  };
}

/** 0 below `lo`, 1 above `hi`, linear between. */
export function ramp(x: number, lo: number, hi: number): number {
  return x <= lo ? 0 : x >= hi ? 1 : (x - lo) / (hi - lo);
}

function round2(x: number): string {
  return (Math.round(x * 100) / 100).toString();
}

const PLATFORM_REASON = 'platform apex';

// Length ramps (characters of the subdomain, dots excluded). Bulk tunnels move 107–200 bytes per query, i.e.
// 150–250 encoded characters; benign hash labels stop near 64 (a UUID is 36, a SHA-1 40). Full weight only
// at bulk lengths keeps a single hash label below any block threshold (fixtures/corpora/README.md).
const ENTROPY_MIN_CHARS = 30;
const ENTROPY_FULL_CHARS = 110;
const CLASS_MIN_CHARS = 24;
const CLASS_FULL_CHARS = 96;

/**
 * Randomness of the subdomain, counted only for as many characters as could carry data: near-random text
 * (normalised ≥ 0.75) starts to count past ENTROPY_MIN_CHARS; ≥ 0.95 over ENTROPY_FULL_CHARS is 1.
 */
export function entropySignal(split: SplitName, s: CharStats, weight: number): Signal {
  if (split.platform) return { id: 'label_entropy', value: 0, weight, reason: PLATFORM_REASON };
  const value = ramp(s.normalised, 0.75, 0.95) * ramp(s.length, ENTROPY_MIN_CHARS, ENTROPY_FULL_CHARS);
  return {
    id: 'label_entropy',
    value,
    weight,
    reason: `${round2(s.entropy)} bits/char ${s.alphabet} (${round2(s.normalised)} of random) over ${s.length}`,
  };
}

/** Encoding shape: a hex/base32/base64 alphabet, or letters and digits interleaved like one. */
export function charClassSignal(split: SplitName, s: CharStats, weight: number): Signal {
  if (split.platform) return { id: 'char_class', value: 0, weight, reason: PLATFORM_REASON };
  // Pure hex, base32 with its 2–7 digits, or base64-only characters are encodings by their alphabet alone
  // (hex of ASCII text is 90% digits and switches rarely); otherwise letters and digits interleaving is the tell.
  const byAlphabet = s.base64Chars || s.alphabet === 'hex' || (s.alphabet === 'base32' && s.digitRatio >= 0.08);
  const shape = byAlphabet ? 1 : ramp(s.switchRate, 0.08, 0.25);
  const value = shape * ramp(s.length, CLASS_MIN_CHARS, CLASS_FULL_CHARS);
  return {
    id: 'char_class',
    value,
    weight,
    reason: `${s.alphabet} shape, digits ${Math.round(s.digitRatio * 100)}%, switches ${round2(s.switchRate)}`,
  };
}

/** Long names carry data: subdomain length, the longest label, and the number of labels below the domain. */
export function lengthSignal(split: SplitName, weight: number): Signal {
  if (split.platform) return { id: 'name_length', value: 0, weight, reason: PLATFORM_REASON };
  const bySub = ramp(split.subdomain.length, 64, 180);
  const byLabel = ramp(split.longestLabel, 40, 63);
  const byCount = ramp(split.subLabelCount, 6, 12);
  const value = Math.max(bySub, byLabel, byCount);
  return {
    id: 'name_length',
    value,
    weight,
    reason: `subdomain ${split.subdomain.length} chars, longest label ${split.longestLabel}, ${split.subLabelCount} labels`,
  };
}

// Query types tunnels favour for their larger or free-form answers (iodine: NULL/PRIVATE/TXT/SRV/MX/CNAME/A).
const QTYPE_RISK: ReadonlyMap<number, number> = new Map([
  [10, 1], // NULL
  [65399, 1], // PRIVATE (iodine)
  [16, 0.6], // TXT
  [255, 0.6], // ANY
  [15, 0.4], // MX
  [5, 0.4], // CNAME
  [33, 0.3], // SRV
]);
const QTYPE_NAME: ReadonlyMap<number, string> = new Map([
  [1, 'A'], [28, 'AAAA'], [5, 'CNAME'], [10, 'NULL'], [15, 'MX'], [16, 'TXT'], [33, 'SRV'], [255, 'ANY'], [65, 'HTTPS'], [65399, 'PRIVATE'],
]);

export function qtypeName(qtype: number): string {
  return QTYPE_NAME.get(qtype) ?? `TYPE${qtype}`;
}

export function qtypeSignal(qtype: number, weight: number): Signal {
  return { id: 'qtype', value: QTYPE_RISK.get(qtype) ?? 0, weight, reason: qtypeName(qtype) };
}

/** Young domains score high; unknown age is its own, weaker value (`unknownValue`). */
export function domainAgeSignal(ageDays: number | undefined, youngDays: number, unknownValue: number, weight: number): Signal {
  if (ageDays === undefined) return { id: 'domain_age', value: unknownValue, weight, reason: 'age unknown' };
  const value = ageDays >= youngDays ? 0 : 1 - Math.max(0, ageDays) / youngDays;
  return { id: 'domain_age', value, weight, reason: `registered ${Math.round(ageDays)} days ago` };
}
