// scoring/window.ts — per-session behaviour as plain, JSON-serialisable data with hard memory bounds, and the
// behavioural signals read from it: subdomain fan-out, information volume (Paxson et al., USENIX Security 2013:
// compressed bytes of unique label content per registrable domain) and the NXDOMAIN ratio; and the session-wide
// accounts the budgets read (domains not established, young domains, bytes a minute, encoded-looking labels).
// Pure: every time is an argument; nothing here reads a clock or does I/O.
// Why it is long: one data structure and every operation on it — the read-only view the judge takes, the
// accounting that writes it (sent, answered, blocked, aged), eviction within its memory bounds, and the signals.
import { ramp, type Alphabet } from './lexical.js';
import type { Signal } from './types.js';
import { ENCODED_STREAM, encodedLabelBytes } from './encoded.js';

/** What the session has sent below one registrable domain. */
export interface DomainWindow {
  /** Last time a query to this domain was forwarded (ms). */
  lastMs: number;
  /** Distinct subdomains first forwarded, exponentially decayed with half-life `fanout_window_ms`. */
  fanout: number;
  /** Estimated compressed bytes of unique label content forwarded since the domain was last idle. */
  volumeBytes: number;
  /** Unique subdomains forwarded (bounded by `max_names_per_session`); a known name asked with a new query type is a key of its own (`qtype NUL name`). */
  names: Record<string, 1>;
  /**
   * The repeat channel's model (noteRepeat): every (query type, name) that left, with the times it left — key
   * the name for A, AAAA and HTTPS, `qtype NUL name` for any other type, the bare domain as name '' — at most
   * `max_names_per_session` a session; and when each exact (type, name) last left (the name for A, else
   * `qtype NUL name`; ≤ 3 a symbol).
   */
  symbols: Record<string, number>;
  leftAtMs: Record<string, number>;
  /** Σ departures in `symbols`, and how many symbols there are. */
  departures: number;
  choices: number;
  /** Queries that left for this domain while the window lives, remembered symbols or not (the choice of domain). */
  left: number;
  /** Restored from `evicted`: the session sent here before, and the model forgot it with the window (noteRepeat charges the return). */
  returned: boolean;
  /** 4-grams of the unique content: the compressor's "dictionary" for the estimate. */
  grams: Record<string, 1>;
  /** Entries in `names` and `grams`. */
  nameCount: number;
  gramCount: number;
  /** Domain age as last judged (null = unknown); young domains add to the session's `youngVolumeBytes`. */
  ageDays: number | null;
  young: boolean;
  /**
   * Not established for this session: age unknown or young, and not a platform apex (callers pass that).
   * Fresh domains add to the session's `freshVolumeBytes`, so spreading data over N domains buys nothing.
   */
  fresh: boolean;
  /** What this domain's names added to the session-wide accounts (cross-domain estimate, see sessionNovelBytes). */
  sessionBytes: number;
  /** Time (ms) of the last exfiltration-like block of a query to this domain (sticky blocks), or -1. */
  blockedAtMs: number;
  /** Novel names with an encoded-looking label sent here: from ENCODED_STREAM of them (¾ of its names) the domain is a stream (encoded.ts). */
  encodedNames: number;
}

/** Everything the policy remembers about a session: plain data (Redis can hold it as JSON later). */
export interface SessionState {
  domains: Record<string, DomainWindow>;
  domainCount: number;
  /** Registrable domains in arrival order (from `orderHead` on), for O(1) eviction. */
  order: string[];
  orderHead: number;
  /**
   * Volume of evicted domains (registrable → bytes; negative: a fresh domain's, still in freshVolumeBytes), restored if the domain comes back: without it a
   * session could wipe an attacker domain's account by resolving max_domains_per_session other domains
   * between bursts. Numbers only, bounded by EVICTED_MAX (oldest forgotten first).
   */
  evicted: Record<string, number>;
  evictedCount: number;
  /** Session-wide totals for the memory bounds. */
  nameCount: number;
  gramCount: number;
  /** Σ volumeBytes over young domains. */
  youngVolumeBytes: number;
  /** Σ volumeBytes over fresh domains (unknown or young age, not a platform): the session-wide budget's account. */
  freshVolumeBytes: number;
  /**
   * Novel label bytes to any domain but a platform apex, decayed with a time constant of RATE_TAU_MS (one
   * minute) as of `rateAtMs`: at a steady rate of R bytes a minute it settles at R, so it reads as "bytes in
   * the last minute" (the bandwidth cap's account).
   */
  rateBytes: number;
  rateAtMs: number;
  /** Novel bytes of encoded-looking labels to any domain but a platform apex, old ones too, for the session's life (encoded.ts). */
  encodedBytes: number;
  /** Novel label bytes (as the session-wide estimate counts them) to any domain but a platform apex, old ones included, for the life of the session. */
  allVolumeBytes: number;
  /** Σ `left` over the live windows, and how many of them have any: the model of which domain a query left for (noteRepeat). */
  left: number;
  leftDomains: number;
  /** Σ `choices` over the live windows (the symbols' memory bound). */
  symbolCount: number;
  /** A, AAAA and HTTPS among the repeats that left within `repeat_floor_ms` (uncached): which one was asked is priced by these. */
  addressTypes: [number, number, number];
  /**
   * Bytes carried by repeats of known names that left again (which of its domain's names left, as an adaptive model
   * prices it), to any domain but a platform apex or an internal suffix, for the life of the session (noteRepeat).
   */
  repeatBytes: number;
  /** Labels the session has sent to any domain (bounded by `max_names_per_session`): a label used again is cheap. */
  labels: Record<string, 1>;
  labelCount: number;
  /** Times (ms) of the most recent block verdicts, newest last, at most BLOCK_HISTORY. */
  blocks: number[];
  /** Decayed counts of forwarded answers and of NXDOMAIN among them. */
  answers: number;
  nxAnswers: number;
  answersAtMs: number;
  /** Bumped by every change above (not by the passing of time): lets a caller reuse what it computed from an unchanged state. */
  version: number;
}

/** The window knobs (snake_case: the `scoring` config section passes straight through). */
export interface WindowParams {
  readonly fanout_window_ms: number;
  readonly fanout_high: number;
  readonly volume_idle_ms: number;
  readonly volume_high_bytes: number;
  readonly young_domain_days: number;
  readonly max_domains_per_session: number;
  readonly max_names_per_session: number;
  readonly max_grams_per_session: number;
  readonly repeat_floor_ms: number;
}

export const BLOCK_HISTORY = 16;

export function newSessionState(): SessionState {
  return {
    domains: Object.create(null) as Record<string, DomainWindow>,
    domainCount: 0,
    order: [],
    orderHead: 0,
    evicted: Object.create(null) as Record<string, number>,
    evictedCount: 0,
    nameCount: 0,
    gramCount: 0,
    youngVolumeBytes: 0,
    freshVolumeBytes: 0,
    rateBytes: 0,
    rateAtMs: 0,
    encodedBytes: 0,
    allVolumeBytes: 0,
    left: 0,
    leftDomains: 0,
    symbolCount: 0,
    addressTypes: [0, 0, 0],
    repeatBytes: 0,
    labels: Object.create(null) as Record<string, 1>,
    labelCount: 0,
    blocks: [],
    answers: 0,
    nxAnswers: 0,
    answersAtMs: 0,
    version: 0,
  };
}

function decay(value: number, fromMs: number, toMs: number, halfLifeMs: number): number {
  const dt = toMs - fromMs;
  return dt <= 0 ? value : value * Math.pow(2, -dt / halfLifeMs);
}

/** The window of `registrable`, or undefined when the session has sent nothing there. */
export function domainWindow(state: SessionState, registrable: string): DomainWindow | undefined {
  return state.domains[registrable];
}

/**
 * Open (or create) the window of `registrable` at judge time and record the domain's age: young domains add to
 * the session's `youngVolumeBytes`; fresh ones (unknown or young age, unless `established` — a platform apex
 * whose tenants cannot run a nameserver) to `freshVolumeBytes`. Returns the window so the caller can project
 * the volume of this query.
 */
export function noteAge(state: SessionState, registrable: string, ageDays: number | undefined, atMs: number, p: WindowParams, established = false): DomainWindow {
  const w = openWindow(state, registrable, atMs, p);
  // a lookup that missed its budget does not forget a known age
  const age = ageDays ?? w.ageDays;
  const fresh = !established && (age === null || age < p.young_domain_days);
  if (fresh !== w.fresh) {
    state.freshVolumeBytes += fresh ? w.sessionBytes : -w.sessionBytes;
    w.fresh = fresh;
    state.version++;
  }
  if (ageDays === undefined) return w;
  if (w.ageDays !== ageDays) state.version++;
  w.ageDays = ageDays;
  const young = ageDays < p.young_domain_days;
  if (young !== w.young) {
    state.youngVolumeBytes += young ? w.volumeBytes : -w.volumeBytes;
    w.young = young;
  }
  return w;
}

function openWindow(state: SessionState, registrable: string, atMs: number, p: WindowParams): DomainWindow {
  let w = state.domains[registrable];
  if (w !== undefined) {
    if (atMs - w.lastMs > p.volume_idle_ms) {
      forget(state, w, true); // quiet long enough: start afresh
      state.version++;
    }
    return w;
  }
  if (state.domainCount >= p.max_domains_per_session) evictOldest(state, atMs, p);
  const restored = state.evicted[registrable];
  if (restored !== undefined) {
    delete state.evicted[registrable];
    state.evictedCount--;
  }
  // A negative restored volume was a fresh domain's: its session bytes stayed in freshVolumeBytes when it was
  // evicted and stay there for good (sessionBytes starts at 0, so nothing is counted twice or taken back).
  w = { lastMs: atMs, fanout: 0, volumeBytes: restored === undefined ? 0 : Math.abs(restored), names: Object.create(null) as Record<string, 1>, symbols: Object.create(null) as Record<string, number>, leftAtMs: Object.create(null) as Record<string, number>, departures: 0, choices: 0, left: 0, returned: restored !== undefined, grams: Object.create(null) as Record<string, 1>, nameCount: 0, gramCount: 0, ageDays: null, young: false, fresh: true, sessionBytes: 0, blockedAtMs: -1, encodedNames: 0 };
  state.domains[registrable] = w;
  state.domainCount++;
  state.version++;
  state.order.push(registrable);
  return w;
}

function forget(state: SessionState, w: DomainWindow, keep: boolean): void {
  if (w.young) state.youngVolumeBytes -= w.volumeBytes;
  if (w.fresh && keep) state.freshVolumeBytes -= w.sessionBytes; // an evicted fresh domain stays counted (evictOldest)
  state.nameCount -= w.nameCount;
  state.gramCount -= w.gramCount;
  state.left -= w.left;
  if (w.left > 0) state.leftDomains--;
  state.symbolCount -= w.choices;
  if (keep) {
    w.left = 0;
    w.returned = false;
    w.symbols = Object.create(null) as Record<string, number>;
    w.leftAtMs = Object.create(null) as Record<string, number>;
    w.volumeBytes = 0;
    w.fanout = 0;
    w.nameCount = 0;
    w.gramCount = 0;
    w.names = Object.create(null) as Record<string, 1>;
    w.departures = 0;
    w.choices = 0;
    w.grams = Object.create(null) as Record<string, 1>;
    w.sessionBytes = 0;
    w.blockedAtMs = -1;
    w.encodedNames = 0;
  }
}

// Second-chance (CLOCK) eviction over the arrival order: O(1) amortised, so a flood of new registrable
// domains costs no scan. The oldest domain goes unless it was used within the last fan-out window; then it
// moves to the back (at most SECOND_CHANCES times per eviction) and the next oldest is considered.
const SECOND_CHANCES = 4;

function evictOldest(state: SessionState, atMs: number, p: WindowParams): void {
  let chances = SECOND_CHANCES;
  while (state.orderHead < state.order.length) {
    const key = state.order[state.orderHead++]!;
    const w = state.domains[key];
    if (w === undefined) continue;
    if (chances-- > 0 && atMs - w.lastMs < p.fanout_window_ms) {
      state.order.push(key); // recently used: to the back of the line
      continue;
    }
    forget(state, w, false);
    // An evicted fresh domain's bytes stay in the session-wide account (remembered as a negative number, so a
    // return does not count them twice): evicting is no way to wipe what the session sent.
    const live = w.volumeBytes > 0 && atMs - w.lastMs <= p.volume_idle_ms;
    if (live) rememberEvicted(state, key, w.fresh ? -w.volumeBytes : w.volumeBytes);
    else {
      if (w.fresh) state.freshVolumeBytes -= w.sessionBytes;
      // nothing to restore but the fact it was here: a return is then charged as one (evicting wipes no model)
      if (w.left > 0) rememberEvicted(state, key, 0);
    }
    delete state.domains[key];
    state.domainCount--;
    break;
  }
  if (state.orderHead > 64 && state.orderHead * 2 > state.order.length) {
    state.order = state.order.slice(state.orderHead);
    state.orderHead = 0;
  }
}

const EVICTED_MAX = 4096;

function rememberEvicted(state: SessionState, key: string, volumeBytes: number): void {
  if (state.evictedCount >= EVICTED_MAX) {
    // Full: forget the older half at once (string keys keep insertion order), so the cost of finding
    // the oldest is paid once per EVICTED_MAX / 2 evictions — a for-in per eviction was O(n) each.
    const keys = Object.keys(state.evicted);
    for (let i = 0; i < keys.length / 2; i++) delete state.evicted[keys[i]!];
    state.evictedCount = keys.length - Math.ceil(keys.length / 2);
  }
  state.evicted[key] = volumeBytes; // a domain is in `domains` or here, never both, so this key is new
  state.evictedCount++;
}

// Literal cost in bytes per character, by alphabet: what deflate's Huffman stage pays for near-random text of
// that alphabet on inputs of a few hundred bytes (fixtures/corpora/README.md compares this estimate to deflate).
const LITERAL_BYTES: Readonly<Record<Alphabet, number>> = { hex: 0.56, letters: 0.62, base32: 0.68, alnum: 0.7, base64: 0.8 };
// A back-reference (length + distance codes) costs deflate about 3 bytes.
const MATCH_BYTES = 2.5;
const GRAM = 4;

/**
 * Estimated compressed bytes that `sub` adds to what `w` already holds: an LZ77-style greedy parse against the
 * 4-grams seen so far (a run of known 4-grams is one back-reference, everything else a literal). Linear in the
 * length, no allocation beyond 4-char substrings, deterministic — deflate itself costs ~10 µs per call.
 */
export function estimateNovelBytes(w: DomainWindow | undefined, sub: string, alphabet: Alphabet): number {
  const lit = LITERAL_BYTES[alphabet];
  if (w === undefined) return sub.length * lit;
  const grams = w.grams;
  let bytes = 0;
  let i = 0;
  while (i < sub.length) {
    if (i + GRAM <= sub.length && grams[sub.substr(i, GRAM)] === 1) {
      let j = i + 1;
      while (j + GRAM <= sub.length && grams[sub.substr(j, GRAM)] === 1) j++;
      bytes += MATCH_BYTES;
      i = j + GRAM - 1;
    } else {
      bytes += lit;
      i++;
    }
  }
  return bytes;
}

/**
 * What `sub` adds to the session-wide accounts (domains of unknown/young age, bytes a minute), given what
 * `domainBytes` (estimateNovelBytes against its own domain) says: no more than that, and a label the session
 * already sent to any domain costs only the choice among the labels it knows (log2 of their number, in bytes),
 * so `www`, `api`, `cdn` under a hundred domains carry almost nothing while new content costs in full.
 */
export function sessionNovelBytes(state: SessionState, sub: string, alphabet: Alphabet, domainBytes: number): number {
  if (state.labelCount === 0) return domainBytes;
  const lit = LITERAL_BYTES[alphabet];
  const ref = Math.log2(state.labelCount + 1) / 8;
  let bytes = 0;
  let start = 0;
  for (let i = 0; i <= sub.length; i++) {
    if (i < sub.length && sub.charCodeAt(i) !== 46 /* . */) continue;
    const len = i - start;
    bytes += len > 0 && state.labels[sub.slice(start, i)] === 1 ? Math.min(ref, len * lit) : len * lit;
    start = i + 1;
  }
  return Math.min(bytes, domainBytes);
}

/**
 * What `sub`'s encoded-looking labels add to the session's encoded-label account (encoded.ts): each such label
 * new to the session costs its literal bytes, no more in all than `domainBytes` (what its domain's estimate says).
 */
export function encodedNovelBytes(state: SessionState, w: DomainWindow | undefined, sub: string, alphabet: Alphabet, domainBytes: number): number {
  // a stream: several encoded names, and at least three quarters of the domain's names (a tracker's ids mixed with words are not)
  const stream = w !== undefined && w.encodedNames >= ENCODED_STREAM && w.encodedNames * 4 >= w.nameCount * 3;
  return Math.min(encodedLabelBytes(state.labels, sub, LITERAL_BYTES[alphabet], stream), domainBytes);
}

/**
 * What judging reads of `registrable` before this query, without changing anything: the window as accounting
 * would open it (undefined when the session sent nothing there, or it was idle long enough to start afresh),
 * and the domain's and the session's volumes with the age flags this query's age would give it (noteAge's
 * arithmetic, projected). The judge is pure; only accounting (noteAge, noteSent, noteBlock) writes.
 */
export interface DomainView {
  readonly window: DomainWindow | undefined;
  readonly volumeBytes: number;
  readonly young: boolean;
  readonly fresh: boolean;
  readonly youngVolumeBytes: number;
  readonly freshVolumeBytes: number;
}

export function viewDomain(state: SessionState, registrable: string, ageDays: number | undefined, atMs: number, p: WindowParams, established = false): DomainView {
  const raw = state.domains[registrable];
  const idle = raw !== undefined && atMs - raw.lastMs > p.volume_idle_ms;
  const restored = raw === undefined ? state.evicted[registrable] : undefined;
  const volume = raw === undefined ? (restored === undefined ? 0 : Math.abs(restored)) : idle ? 0 : raw.volumeBytes;
  const sessionBytes = raw !== undefined && !idle ? raw.sessionBytes : 0;
  const wasYoung = raw?.young ?? false;
  const wasFresh = raw?.fresh ?? true;
  let youngVolume = state.youngVolumeBytes - (idle && wasYoung ? raw.volumeBytes : 0);
  let freshVolume = state.freshVolumeBytes - (idle && wasFresh ? raw.sessionBytes : 0);
  const age = ageDays ?? raw?.ageDays ?? null;
  const fresh = !established && (age === null || age < p.young_domain_days);
  if (fresh !== wasFresh) freshVolume += fresh ? sessionBytes : -sessionBytes;
  const young = ageDays === undefined ? wasYoung : ageDays < p.young_domain_days;
  if (young !== wasYoung) youngVolume += young ? volume : -volume;
  return { window: idle ? undefined : raw, volumeBytes: volume, young, fresh, youngVolumeBytes: youngVolume, freshVolumeBytes: freshVolume };
}

/** One query that left for an upstream (a cache miss): what it carried to its domain's nameservers. */
export interface SentEvent {
  readonly registrable: string;
  readonly subdomain: string;
  readonly alphabet: Alphabet;
  readonly atMs: number;
  /** Below a platform apex (tenants run no nameserver): not counted by the bandwidth cap. */
  readonly platform?: boolean;
  /** Under a suffix only the operator's DNS answers (`scoring.internal_suffixes`): its repeats are not charged. */
  readonly internal?: boolean;
  /** The query type: a name already sent, asked with a type it was not asked with before, costs QTYPE_CHOICE_BYTES. */
  readonly qtype?: number;
}

/**
 * What a name the session already sent costs when it is asked again with a query type it was not asked with before
 * (A, AAAA and HTTPS are free: browsers and agents ask those together): the type is the client's choice and reaches
 * the domain's nameserver, a few bits off a name it already knows among the ~30 types agents ask (COMMON_QTYPES), a
 * whole 16-bit number for any other (an unassigned or private type, as tunnels use).
 */
export const QTYPE_CHOICE_BYTES = 0.75;
export const RARE_QTYPE_CHOICE_BYTES = 2;
const FREE_QTYPES: ReadonlySet<number> = new Set([1, 28, 65]);
/** The query types agents ask (RFC 1035, 3596, 2782, 3403, 4034, 6698, 6844, 7344, 9460 …); NULL is scored, not here. */
export const COMMON_QTYPES: ReadonlySet<number> = new Set([
  1 /* A */, 2 /* NS */, 5 /* CNAME */, 6 /* SOA */, 12 /* PTR */, 13 /* HINFO */, 15 /* MX */, 16 /* TXT */, 28 /* AAAA */,
  29 /* LOC */, 33 /* SRV */, 35 /* NAPTR */, 37 /* CERT */, 39 /* DNAME */, 43 /* DS */, 44 /* SSHFP */, 46 /* RRSIG */,
  47 /* NSEC */, 48 /* DNSKEY */, 50 /* NSEC3 */, 51 /* NSEC3PARAM */, 52 /* TLSA */, 53 /* SMIMEA */, 59 /* CDS */,
  60 /* CDNSKEY */, 61 /* OPENPGPKEY */, 64 /* SVCB */, 65 /* HTTPS */, 99 /* SPF */, 255 /* ANY */, 256 /* URI */, 257 /* CAA */,
]);

export interface ForwardEvent extends SentEvent {
  readonly rcode: number;
}

/** The time constant of the bandwidth account (`rateBytes`): one minute. */
export const RATE_TAU_MS = 60_000;

/** The session's novel label bytes of about the last minute (`rateBytes` decayed to `atMs`). */
export function bytesPerMinute(state: SessionState, atMs: number): number {
  const dt = atMs - state.rateAtMs;
  return dt <= 0 ? state.rateBytes : state.rateBytes * Math.exp(-dt / RATE_TAU_MS);
}

/** A forwarded query and its answer at once (noteSent then noteAnswer): what replays and tests use. */
export function observeForwarded(state: SessionState, e: ForwardEvent, p: WindowParams): void {
  noteSent(state, e, p);
  noteAnswer(state, e.rcode, e.atMs, p);
}

/** An upstream's answer came back: the session-wide NXDOMAIN ratio, decayed over the fan-out window. */
export function noteAnswer(state: SessionState, rcode: number, atMs: number, p: WindowParams): void {
  state.version++;
  state.answers = decay(state.answers, state.answersAtMs, atMs, p.fanout_window_ms) + 1;
  state.nxAnswers = decay(state.nxAnswers, state.answersAtMs, atMs, p.fanout_window_ms) + (rcode === 3 ? 1 : 0);
  state.answersAtMs = atMs;
}

/**
 * Account one query as it leaves for an upstream: fan-out and information volume. Counted when it is sent, not
 * when (or whether) an answer comes back: the labels reached the domain's nameservers either way, and an
 * attacker's nameserver that never answers (or answers late, with many queries in flight) must pay in full.
 */
export function noteSent(state: SessionState, e: SentEvent, p: WindowParams): void {
  state.version++;
  const w = openWindow(state, e.registrable, e.atMs, p);
  const fanout = decay(w.fanout, w.lastMs, e.atMs, p.fanout_window_ms);
  w.lastMs = e.atMs;
  w.fanout = fanout;
  const sub = e.subdomain;
  const novel = sub.length > 0 && w.names[sub] !== 1;
  // a known name, or the bare domain, carries no new content: only which (type, name) left, and when
  noteRepeat(state, w, sub, e, p, !novel);
  if (!novel) {
    if (sub.length > 0 && e.qtype !== undefined && !FREE_QTYPES.has(e.qtype)) noteQtypeChoice(state, w, sub, e, p);
    return;
  }
  w.fanout = fanout + 1;
  const added = estimateNovelBytes(w, sub, e.alphabet);
  addBytes(state, w, added, sessionNovelBytes(state, sub, e.alphabet, added), e);
  if (e.platform !== true) {
    const encoded = encodedNovelBytes(state, w, sub, e.alphabet, added);
    state.encodedBytes += encoded;
    if (encoded > 0) w.encodedNames++;
  }
  rememberLabels(state, sub, p);
  rememberName(state, w, sub, p);
  for (let i = 0; i + GRAM <= sub.length && state.gramCount < p.max_grams_per_session; i++) {
    const g = sub.substr(i, GRAM);
    if (w.grams[g] !== 1) {
      w.grams[g] = 1;
      w.gramCount++;
      state.gramCount++;
    }
  }
}

/**
 * One query left for `w`'s domain: the repeat channel's model learns it, and a repeat (`charge`: a known name or
 * the bare domain; a new name pays for its labels instead) is charged what its choice carries. The channel: an
 * attacker asks names it already sent, one of k per symbol, and *which* name left is the data — no new label ever
 * leaves (bench/lab.mjs LAB_CLASSES=codebook: 16 two-letter names, a nibble a query, an attacker nameserver
 * answering with TTL 0, got 504 of 512 secret bytes out before this); paced at its answers' TTL, a permutation of
 * k names a period still carries log2(k!) bits. Priced by an adaptive order-0 model of the domain's departures by
 * symbol — (type, name), A/AAAA/HTTPS as one type (Krichevsky–Trofimov: -log2((c + ½) / (N + k/2)), c this
 * symbol's departures so far, N all of them, k the symbols known; a symbol not seen before costs log2(k + 1)): a
 * sequence of choices carries no more than this charges it, give or take the model's own cost, however it is
 * paced, while one name polled again and again, or a few in steady proportions, costs next to nothing — and a
 * benign name leaves again only when its cached answer expired (replayed agent sessions: a few bytes).
 * A repeat that left again within `repeat_floor_ms` of the same (type, name)'s last departure (no answer was cached
 * that long: TTL 0, an attacker's short one, or a CDN's 20–60 s) also pays the choice of *domain* among the session's domains,
 * priced the same way (16 bare domains, or one name under each), and which of A, AAAA and HTTPS it asked.
 * Only then: charged every time a cached answer expires, the choice of domain added up to 54 B in a 40-minute
 * replayed agent session (2.6 B without it), which a day-long session would carry past the budget.
 * Charged to the session's lifetime `repeatBytes`; platform apexes and internal suffixes never are.
 */
function noteRepeat(state: SessionState, w: DomainWindow, sub: string, e: SentEvent, p: WindowParams, charge: boolean): void {
  // A, AAAA and HTTPS are one symbol (asked together, each cached apart); every other type is a symbol of its own
  const qtype = e.qtype ?? 1;
  const address = FREE_QTYPES.has(qtype);
  // Keys: the name itself for A/AAAA/HTTPS (the string `names` already holds: no new string kept per symbol — a
  // key string per name kept on every miss cost cache hits measurably after a miss flood, `onoff.mjs` MISS=1),
  // `qtype NUL name` otherwise (NUL: no name read off the wire as text holds one)
  const key = address ? sub : `${qtype}\u0000${sub}`;
  const timeKey = qtype === 1 ? sub : `${qtype}\u0000${sub}`; // when this exact (type, name) last left: ≤ 3 a symbol
  // typeof: the records are plain data; one restored from JSON would answer `constructor` from its prototype
  const seen = w.symbols[key];
  const c = typeof seen === 'number' ? seen : 0;
  const last = w.leftAtMs[timeKey];
  const full = c === 0 && state.symbolCount >= p.max_names_per_session;
  if (charge) {
    let bits = c > 0 ? (w.choices <= 1 ? 0 : -Math.log2((c + 0.5) / (w.departures + w.choices / 2)))
      // a symbol not seen before: which, among those known and one more (past the bound: among as many as it
      // holds — an unremembered symbol is never cheap), and for a type but A/AAAA/HTTPS which type
      : Math.log2(full ? p.max_names_per_session : w.choices + 1) + (address ? 0 : COMMON_QTYPES.has(qtype) ? COMMON_TYPE_BITS : 16);
    // back at a domain whose window was evicted: which domain, at the model's price for one it has not seen
    if (w.returned && w.left === 0) bits += Math.log2((state.left + (state.leftDomains + 1) / 2) / 0.5);
    if (c > 0 && typeof last === 'number' && e.atMs - last < p.repeat_floor_ms) {
      // nothing was cached in between: the choice of domain, and which of A, AAAA and HTTPS, are data too
      if (state.leftDomains > 1) bits -= Math.log2((w.left + 0.5) / (state.left + state.leftDomains / 2));
      if (address) bits += addressTypeBits(state, qtype === 28 ? 1 : qtype === 65 ? 2 : 0);
    }
    if (bits > 0 && e.platform !== true && e.internal !== true) state.repeatBytes += bits / 8;
  }
  if (w.left++ === 0) state.leftDomains++;
  state.left++;
  // past the bound a symbol is not remembered (each of its departures is charged as a new one), and platform and
  // internal names, never charged, take no room in it (a flood of them cannot fill it and make repeats free)
  if (c === 0) {
    if (full || e.platform === true || e.internal === true) return;
    w.choices++;
    state.symbolCount++;
  }
  w.symbols[key] = c + 1;
  w.leftAtMs[timeKey] = e.atMs;
  w.departures++;
}

/** Which of the ~30 types agents ask (COMMON_QTYPES) a new symbol asked; any other type is a whole 16-bit number. */
const COMMON_TYPE_BITS = Math.log2(32);

/** Which of A, AAAA and HTTPS an uncached repeat asked, priced by what the session's uncached repeats asked (KT). */
function addressTypeBits(state: SessionState, t: 0 | 1 | 2): number {
  const n = state.addressTypes;
  const bits = -Math.log2((n[t] + 0.5) / (n[0] + n[1] + n[2] + 1.5));
  n[t]++;
  return bits;
}

/** A known name asked with a type it was not asked with before: the choice's bytes to every account the name feeds. */
function noteQtypeChoice(state: SessionState, w: DomainWindow, sub: string, e: SentEvent, p: WindowParams): void {
  const key = `${e.qtype}\u0000${sub}`; // NUL: no name read off the wire as text holds one next to a type number
  if (w.names[key] === 1) return;
  rememberName(state, w, key, p);
  const bytes = COMMON_QTYPES.has(e.qtype!) ? QTYPE_CHOICE_BYTES : RARE_QTYPE_CHOICE_BYTES;
  addBytes(state, w, bytes, bytes, e);
}

/** New information sent to `w`'s domain: `domainBytes` to its own accounts, `sessionBytes` to the session-wide ones. */
function addBytes(state: SessionState, w: DomainWindow, domainBytes: number, sessionBytes: number, e: SentEvent): void {
  w.volumeBytes += domainBytes;
  if (w.young) state.youngVolumeBytes += domainBytes;
  w.sessionBytes += sessionBytes;
  if (w.fresh) state.freshVolumeBytes += sessionBytes;
  if (e.platform !== true) {
    state.rateBytes = bytesPerMinute(state, e.atMs) + sessionBytes;
    state.rateAtMs = e.atMs;
    state.allVolumeBytes += sessionBytes;
  }
}

// Past the bounds a name still counts (estimated as novel), it just is not remembered: a flood cannot grow memory.
function rememberName(state: SessionState, w: DomainWindow, key: string, p: WindowParams): void {
  if (state.nameCount >= p.max_names_per_session) return;
  w.names[key] = 1;
  w.nameCount++;
  state.nameCount++;
}

function rememberLabels(state: SessionState, sub: string, p: WindowParams): void {
  let start = 0;
  for (let i = 0; i <= sub.length && state.labelCount < p.max_names_per_session; i++) {
    if (i < sub.length && sub.charCodeAt(i) !== 46 /* . */) continue;
    if (i > start) {
      const label = sub.slice(start, i);
      if (state.labels[label] !== 1) {
        state.labels[label] = 1;
        state.labelCount++;
      }
    }
    start = i + 1;
  }
}

/** Remember a block verdict (used for the "N blocks in a window" quarantine evidence). */
export function noteBlock(state: SessionState, atMs: number): void {
  if (state.blocks.length >= BLOCK_HISTORY) state.blocks.shift();
  state.blocks.push(atMs);
  state.version++;
}

/**
 * Remember an exfiltration-like block of a query to `w`'s domain: further novel names to it are blocked too
 * (sticky) until `stickyUntil` says the block window has passed, so blocked and answered queries of one tunnel
 * cannot interleave.
 */
export function noteDomainBlock(state: SessionState, w: DomainWindow, atMs: number): void {
  w.blockedAtMs = atMs;
  state.version++;
}

/** True while a block of `w`'s domain at most `windowMs` ago still holds. */
export function stuck(w: DomainWindow, atMs: number, windowMs: number): boolean {
  return w.blockedAtMs >= 0 && atMs - w.blockedAtMs < windowMs;
}

/** Blocks at or after `sinceMs`. */
export function blocksSince(state: SessionState, sinceMs: number): number {
  let n = 0;
  for (let i = state.blocks.length - 1; i >= 0 && state.blocks[i]! >= sinceMs; i--) n++;
  return n;
}

// The common, benign case gets a constant reason: no number formatting on every query.
const NO_FANOUT = '0 distinct names recently';
const NO_VOLUME = '~0 B sent';
const NO_NX = '0% NXDOMAIN';

export function fanoutSignal(w: DomainWindow | undefined, atMs: number, p: WindowParams, weight: number): Signal {
  const f = w === undefined ? 0 : decay(w.fanout, w.lastMs, atMs, p.fanout_window_ms);
  const n = Math.round(f);
  return { id: 'fanout', value: ramp(f, p.fanout_high / 4, p.fanout_high), weight, reason: n === 0 ? NO_FANOUT : `${n} distinct names recently` };
}

export function volumeSignal(w: DomainWindow | undefined, p: WindowParams, weight: number): Signal {
  const v = w === undefined ? 0 : w.volumeBytes;
  const bytes = Math.round(v);
  return { id: 'info_volume', value: ramp(v, p.volume_high_bytes / 4, p.volume_high_bytes), weight, reason: bytes === 0 ? NO_VOLUME : `~${bytes} B sent` };
}

export function nxSignal(state: SessionState, atMs: number, p: WindowParams, weight: number): Signal {
  const total = decay(state.answers, state.answersAtMs, atMs, p.fanout_window_ms);
  const nx = decay(state.nxAnswers, state.answersAtMs, atMs, p.fanout_window_ms);
  const ratio = total === 0 ? 0 : nx / total;
  const pct = Math.round(ratio * 100);
  return { id: 'nx_ratio', value: ramp(ratio, 0.3, 0.8) * ramp(total, 5, 20), weight, reason: pct === 0 ? NO_NX : `${pct}% NXDOMAIN` };
}
