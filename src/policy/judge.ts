// src/policy/judge.ts — every decision about a query lives here: allow/deny/learned-deny zones, the score against the
// session type's threshold, the quarantine evidence (blocks in a window, information volume per domain and over
// young domains), observe mode, and the answer check against DNS rebinding; and `account()`, the one writer of a
// session's window (scoring/window.ts), told by the pipeline what became of each judged query. `judge()` reads the
// window and never writes it. Pure CPU: no sockets, no clock (times arrive as arguments), no logging — the pipeline
// records what this returns.
import { parse } from 'tldts';
import {
  blocksSince, bytesPerMinute, domainWindow, encodedNovelBytes, estimateNovelBytes, newSessionState, noteAge, noteAnswer, noteBlock, noteDomainBlock, noteSent, sessionNovelBytes, stuck, viewDomain,
  nameFacts, platformSet, scoreQuery, splitName, topSignals, trimName, type NameFacts,
  type Score, type ScoringParams, type SessionState,
} from '../../scoring/index.js';
import type { PolicyConfig, ScoringConfig, SessionTypePolicy } from './schema.js';
import { RpzSet, type RpzMatch } from '../zones/rpz.js';
import { CALLBACK_SERVICES, inZones, PUBLIC_RESOLVERS } from './lists.js';
import { firstInsideAddress, rebindingRanges, type RebindingRanges } from './rebinding.js';
import { ANSWER_REUSE_MAX_MS, handleOf, memoOfHandle, newMemo, nextGeneration, reusableVerdict, type Listed, type NameMemo as Memo, type NameMemoHandle } from './name-memo.js';

type NameMemo = Memo<Verdict>;

export { CALLBACK_SERVICES, inZones, PUBLIC_RESOLVERS } from './lists.js';
export { ipv4Number } from './rebinding.js';
export type { NameMemoHandle } from './name-memo.js';

export type { SessionState } from '../../scoring/index.js';
export type { PolicyConfig, ScoringConfig } from './schema.js';

// One definition of the session types (src/policy/schema.ts), re-exported for the judge's callers.
export { SESSION_TYPES, type SessionType } from './schema.js';
import type { SessionType } from './schema.js';
export interface SessionInfo {
  readonly id: string;
  readonly user: string;
  readonly role: string;
  readonly type: SessionType;
}
export type Action = 'answer' | 'nxdomain' | 'quarantine';
export type RuleId = 'allow_list' | 'deny_list' | 'learned_deny' | 'rpz' | 'threshold' | 'accumulation' | 'sticky' | 'bandwidth' | 'rebinding' | 'quarantined' | 'none';
export type Mode = 'enforce' | 'observe';
export interface Verdict {
  readonly action: Action;
  readonly rule: RuleId;
  /** False in observe mode: `action` is what would have happened, the query is answered anyway. */
  readonly enforced: boolean;
  readonly mode: Mode;
  readonly score?: Score | undefined;
  /** Short (≤ 80 chars), for the EDE extra text and the log line: the deciding signals or evidence. */
  readonly reason: string;
  /** The name's scoring facts, handed to account() of the same query so it need not recompute them (scored verdicts only). */
  readonly facts?: NameFacts | undefined;
  /**
   * A block that is quarantine evidence, for account() to note: 'scored' (the score reached block_at; the domain
   * turns sticky) or 'sticky' (a new name to a domain blocked a moment ago). Absent: not evidence.
   */
  readonly block?: 'scored' | 'sticky' | undefined;
  /** Rule 'rpz': the policy zone, trigger and action (NXDOMAIN, NODATA, DROP or local data) the answer is built from. */
  readonly rpz?: RpzMatch | undefined;
}

/**
 * Every verdict is built here, every field present and in one order (absent ones undefined): the pipeline, the
 * outcome recorder and account() read a verdict's fields on every query, and the judge's dozen literal shapes made
 * those reads megamorphic (a shape-dispatching load per field per query, on every cache hit: `npm run bench`).
 */
export function verdictOf(action: Action, rule: RuleId, enforced: boolean, mode: Mode, reason: string, score?: Score, facts?: NameFacts, block?: 'scored' | 'sticky', rpz?: RpzMatch): Verdict {
  return { action, rule, enforced, mode, score, reason, facts, block, rpz };
}

export interface JudgeInput {
  /** Lower-case, no trailing dot. */
  readonly name: string;
  readonly qtype: number;
  readonly session: SessionInfo;
  readonly state: SessionState;
  readonly ageDays: number | undefined;
  readonly atMs: number;
}

/** What became of a judged query, or of its upstream answer: the only input that changes a session's window. */
export type AccountEvent =
  | {
    readonly kind: 'query';
    /** Lower-case, no trailing dot. */
    readonly name: string;
    readonly qtype: number;
    readonly atMs: number;
    readonly ageDays: number | undefined;
    /** The verdict judge() gave this query (its block is noted, its facts reused); undefined: none was given. */
    readonly verdict: Verdict | undefined;
    /** The query left for an upstream (a cache miss): its labels reached the domain's nameservers. */
    readonly sent: boolean;
  }
  /** An upstream's answer to a query that was sent: the NXDOMAIN ratio. */
  | { readonly kind: 'answer'; readonly atMs: number; readonly rcode: number };

const MAX_REASON = 80;
const clip = (s: string): string => (s.length <= MAX_REASON ? s : `${s.slice(0, MAX_REASON - 1)}…`);

const ANSWER_REASON = 'below threshold';

const NAME_FACTS_MAX = 8192;

export class Policy {
  readonly mode: (type: SessionType) => Mode;
  private readonly types: Readonly<Record<SessionType, SessionTypePolicy>>;
  private readonly modes: Readonly<Record<SessionType, Mode>>;
  private readonly allow: ReadonlySet<string>;
  private readonly deny: ReadonlySet<string>;
  private readonly callbacks: ReadonlySet<string>;
  private learned: ReadonlySet<string> = new Set();
  private deniedByHand: ReadonlySet<string> = new Set();
  private rpz: RpzSet = new RpzSet([]);
  private readonly platforms: ReadonlySet<string>;
  private readonly internal: ReadonlySet<string>;
  private readonly params: ScoringParams;
  private readonly answerReuseMs: number;
  private readonly rebinding: { readonly enabled: boolean; readonly allow: ReadonlySet<string>; readonly ranges: RebindingRanges };
  /** Prebuilt verdicts for the list rules, per session type (no allocation on those paths). */
  private readonly fixed: Readonly<Record<SessionType, Readonly<Record<'allow' | 'deny' | 'callback' | 'learned' | 'denied_by_hand' | 'answer', Verdict>>>>;

  constructor(policy: PolicyConfig, scoring: ScoringConfig) {
    this.types = policy.session_types;
    const modeOf = (t: SessionType): Mode => {
      const m = policy.session_types[t].mode;
      return m === 'inherit' ? policy.mode : m;
    };
    this.modes = { interactive: modeOf('interactive'), batch: modeOf('batch'), scheduled: modeOf('scheduled') };
    this.mode = (type) => this.modes[type];
    this.allow = new Set(policy.allow.map(trimName));
    this.deny = new Set([...(policy.deny_public_resolvers ? PUBLIC_RESOLVERS : []), ...policy.deny.map(trimName)]);
    this.callbacks = policy.deny_callback_services ? new Set([...CALLBACK_SERVICES, ...policy.callback_services.map(trimName)]) : new Set();
    this.platforms = platformSet(scoring.platforms, scoring.platform_defaults);
    this.internal = new Set(scoring.internal_suffixes.map(trimName));
    this.params = scoring;
    this.answerReuseMs = Math.min(ANSWER_REUSE_MAX_MS, scoring.fanout_window_ms / 100);
    this.rebinding = {
      enabled: policy.rebinding.enabled,
      allow: new Set([...policy.rebinding.allow.map(trimName), ...this.allow]),
      ranges: rebindingRanges(policy.rebinding.block_cgnat),
    };
    const fixedFor = (t: SessionType) => {
      const mode = this.modes[t];
      const enforced = mode === 'enforce';
      return {
        allow: verdictOf('answer', 'allow_list', enforced, mode, 'allow list'),
        deny: verdictOf('nxdomain', 'deny_list', enforced, mode, 'deny list'),
        callback: verdictOf('nxdomain', 'deny_list', enforced, mode, 'known callback service (policy.callback_services)'),
        // The EDE text says where a learned-deny entry came from: an analyst's confirmed quarantine, or by hand.
        learned: verdictOf('nxdomain', 'learned_deny', enforced, mode, 'domain confirmed as exfiltration in a quarantine'),
        denied_by_hand: verdictOf('nxdomain', 'learned_deny', enforced, mode, 'domain denied by hand by an analyst'),
        answer: verdictOf('answer', 'none', enforced, mode, ANSWER_REASON),
      } as const;
    };
    this.fixed = { interactive: fixedFor('interactive'), batch: fixedFor('batch'), scheduled: fixedFor('scheduled') };
  }

  /**
   * What a name alone decides — which list it is on, and the per-name part of scoring (tldts split,
   * character statistics, lexical signals) — remembered for names that come again: a cache hit is a name
   * seen before, and this is most of judge()'s cost (`npm run bench`, scoring on/off). One lookup per query
   * on a hit. A name seen for the first time only leaves its string in `seen`; its facts travel with the
   * verdict to the observe step of the same query (Verdict.facts) and are not kept: names that never
   * repeat (unique names, a tunnel's labels) then die young. Anything a fresh name left behind for a
   * while (a memo map of recent names was tried) survives the next scavenge and is copied and promoted,
   * which made GC the largest share of what scoring cost on a cache miss. Both maps are bounded and
   * start afresh when full (a new generation: handles to the old memos are no longer read).
   */
  private readonly names = new Map<string, NameMemo>();
  private readonly seen = new Set<string>();
  private generation = nextGeneration();
  /** The name judge() last looked up and its memo: the answer check of the same query finds it without a second lookup. */
  private lastName: string | undefined;
  private lastMemo: NameMemo | undefined;

  /** The memo of a name judged before (created on its second sighting), or undefined on a first sighting. */
  private memoOf(name: string): NameMemo | undefined {
    const memo = this.names.get(name);
    if (memo !== undefined) return memo;
    if (!this.seen.has(name)) {
      if (this.seen.size >= NAME_FACTS_MAX) this.seen.clear();
      this.seen.add(name);
      return undefined;
    }
    if (this.names.size >= NAME_FACTS_MAX) this.forgetNames();
    const created = newMemo<Verdict>(this.generation, this.listOf(name));
    this.names.set(name, created);
    return created;
  }

  private forgetNames(): void {
    this.names.clear();
    this.generation = nextGeneration();
  }

  /** The memo of the name judge() last judged, for the caller to keep beside its cached answer (see reuse). */
  get lastMemoHandle(): NameMemoHandle | undefined {
    return handleOf(this.lastMemo);
  }

  /**
   * A cache hit's verdict without judging afresh: what judge() last gave this name (`handle`, kept from
   * lastMemoHandle), if judging now would give the same (name-memo.ts, reusableVerdict); undefined: judge().
   */
  reuse(handle: NameMemoHandle | undefined, qtype: number, type: SessionType, state: SessionState, ageDays: number | undefined, atMs: number): Verdict | undefined {
    const memo = memoOfHandle<Verdict>(handle);
    return memo === undefined || memo.generation !== this.generation ? undefined : reusableVerdict(memo, qtype, type, state, ageDays, atMs, this.answerReuseMs);
  }

  /** True when this name's last answer check saw these very addresses and none pointed inside: judgeAnswer() would pass them. */
  answerCleared(handle: NameMemoHandle | undefined, addresses: readonly string[]): boolean {
    const memo = memoOfHandle<Verdict>(handle);
    return memo !== undefined && memo.generation === this.generation && memo.checkedAddresses === addresses && memo.checkedInside === null;
  }

  /**
   * Which list a name is on: the allow list wins (the operator's own word), then the policy zones in order
   * (a PASSTHRU trigger skips the later zones and the deny lists: null, the name is scored), then deny, the
   * callback services, then learned. The memo's answer, or walked afresh.
   */
  private listOf(name: string, memo?: NameMemo): Listed {
    if (memo !== undefined) return memo.listed;
    if (inZones(name, this.allow)) return 'allow';
    const rpz = this.rpz.zones.length === 0 ? undefined : this.rpz.match(name);
    if (rpz !== undefined) return rpz.action.kind === 'passthru' ? null : rpz;
    return inZones(name, this.deny) ? 'deny' : inZones(name, this.callbacks) ? 'callback' : inZones(name, this.learned) ? 'learned'
      : inZones(name, this.deniedByHand) ? 'denied_by_hand' : null;
  }

  /** The name's scoring facts: kept in the memo of a repeated name, computed and not kept for a fresh one. */
  private factsOf(name: string, memo?: NameMemo): NameFacts {
    if (memo === undefined) return nameFacts(splitName(name, this.platforms), this.params.weights);
    return (memo.facts ??= nameFacts(splitName(name, this.platforms), this.params.weights));
  }

  newSessionState(): SessionState {
    return newSessionState();
  }

  /**
   * The learned deny list: domains an analyst confirmed as exfiltration in a quarantine, and domains an
   * analyst denied by hand (POST /v1/deny). Every name below them is blocked for everyone.
   */
  setLearnedDeny(confirmed: Iterable<string>, byHand: Iterable<string> = []): void {
    const next = new Set<string>();
    for (const d of confirmed) next.add(trimName(d));
    const hand = new Set<string>();
    for (const d of byHand) hand.add(trimName(d));
    this.learned = next;
    this.deniedByHand = hand;
    this.forgetNames();
  }

  /** The response policy zones (reloaded when their files change): first match wins. */
  setRpz(set: RpzSet): void {
    this.rpz = set;
    this.forgetNames();
  }

  judge(input: JudgeInput): Verdict {
    const type = input.session.type;
    const fixed = this.fixed[type];
    const name = input.name;
    const memo = this.memoOf(name);
    this.lastName = name;
    this.lastMemo = memo;
    const listed = this.listOf(name, memo);
    if (listed !== null) {
      if (typeof listed === 'string') return fixed[listed];
      const mode = this.modes[type];
      return verdictOf('nxdomain', 'rpz', mode === 'enforce', mode, clip(`${listed.zone}: ${listed.trigger}`), undefined, undefined, undefined, listed);
    }

    const state = input.state;
    const reused = memo === undefined ? undefined : reusableVerdict(memo, input.qtype, type, state, input.ageDays, input.atMs, this.answerReuseMs);
    if (reused !== undefined) return reused; // a blocking one carries block: 'scored', which account() notes as judging afresh would

    const p = this.params;
    const facts = this.factsOf(name, memo);
    const split = facts.split;
    const stats = facts.stats;
    const score = scoreQuery({ facts, split, stats, qtype: input.qtype, ageDays: input.ageDays, state, atMs: input.atMs }, p);
    const t = this.types[type];
    const mode = this.modes[type];
    const enforced = mode === 'enforce';

    // Quarantine evidence 1: information volume to this domain, over young domains and over every domain not
    // established for the session (unknown or young age, not a platform apex: spreading over N domains buys
    // nothing), including what this query would add — so the query that crosses a budget is the one that does not leave.
    const view = viewDomain(state, split.registrable, input.ageDays, input.atMs, p, split.platform);
    const win = view.window;
    const novel = split.subdomain.length > 0 && win?.names[split.subdomain] !== 1;
    let volume = view.volumeBytes;
    let young = view.youngVolumeBytes;
    let fresh = view.freshVolumeBytes;
    let encoded = state.encodedBytes;
    let all = state.allVolumeBytes;
    let added = -1; // this query's novel bytes to its domain, computed only near a budget: keeps the hot path cheap
    if (novel && (volume * 2 >= t.volume_budget_bytes || young * 2 >= t.young_volume_budget_bytes || fresh * 2 >= t.session_volume_budget_bytes
      || encoded * 2 >= t.encoded_volume_budget_bytes || all * 2 >= t.total_volume_budget_bytes)) {
      added = estimateNovelBytes(win, split.subdomain, stats.alphabet);
      volume += added;
      if (view.young) young += added;
      if (view.fresh) fresh += sessionNovelBytes(state, split.subdomain, stats.alphabet, added);
      if (!split.platform) {
        encoded += encodedNovelBytes(state, win, split.subdomain, stats.alphabet, added);
        all += sessionNovelBytes(state, split.subdomain, stats.alphabet, added);
      }
    }
    const blocking = score.total >= t.block_at;
    // Sticky: a novel name to a domain blocked for exfiltration-like traffic within the block window is blocked
    // too, whatever its own score (a tunnel's next chunk must not slip out between two blocks).
    const sticky = !blocking && novel && win !== undefined && stuck(win, input.atMs, t.block_window_ms);
    const blockedAtMs = win?.blockedAtMs ?? -1;
    // account() notes it: the block window runs from the last scored block, not from sticky ones
    const block = blocking ? 'scored' : sticky ? 'sticky' : undefined;
    // A quarantine verdict stays one for as long as a reuse lasts (its volume and its blocks in the window only grow
    // meanwhile), so a repeated name gets it again, its block still noted: an observe-mode flood of cached names, or
    // queries racing the closing gate, cost no re-scoring. An nxdomain is never reused: the next block may quarantine.
    if (volume >= t.volume_budget_bytes) {
      return this.remember(memo, input, verdictOf('quarantine', 'accumulation', enforced, mode, clip(`~${Math.round(volume)} B of unique labels to ${split.registrable}`), score, facts, block));
    }
    if (young >= t.young_volume_budget_bytes) {
      return this.remember(memo, input, verdictOf('quarantine', 'accumulation', enforced, mode, clip(`~${Math.round(young)} B of unique labels to young domains`), score, facts, block));
    }
    if (fresh >= t.session_volume_budget_bytes) {
      return verdictOf('quarantine', 'accumulation', enforced, mode, clip(`~${Math.round(fresh)} B of unique labels to domains of unknown or young age`), score, facts, block);
    }
    if (encoded >= t.encoded_volume_budget_bytes) {
      return verdictOf('quarantine', 'accumulation', enforced, mode, clip(`~${Math.round(encoded)} B of encoded-looking labels (any domain)`), score, facts, block);
    }
    if (all >= t.total_volume_budget_bytes) {
      return verdictOf('quarantine', 'accumulation', enforced, mode, clip(`~${Math.round(all)} B of unique labels to any domain (session total)`), score, facts, block);
    }
    if (state.repeatBytes >= t.repeat_volume_budget_bytes) {
      return verdictOf('quarantine', 'accumulation', enforced, mode, clip(`~${Math.round(state.repeatBytes)} B in which known names were asked again`), score, facts, block);
    }
    if (!blocking && !sticky) {
      // The last line: new label bytes a minute, to any domain but a platform apex, whatever the score.
      if (novel && !split.platform && state.rateBytes * 2 >= t.bandwidth_bytes_per_min) {
        if (added < 0) added = estimateNovelBytes(win, split.subdomain, stats.alphabet);
        const rate = bytesPerMinute(state, input.atMs) + sessionNovelBytes(state, split.subdomain, stats.alphabet, added);
        if (rate >= t.bandwidth_bytes_per_min) {
          return verdictOf('nxdomain', 'bandwidth', enforced, mode, clip(`~${Math.round(rate)} B of new labels a minute (cap ${t.bandwidth_bytes_per_min})`), score, facts);
        }
      }
      const verdict: Verdict = score.total !== 0 ? verdictOf('answer', 'none', enforced, mode, ANSWER_REASON, score, facts)
        : memo === undefined ? verdictOf('answer', 'none', enforced, mode, ANSWER_REASON, undefined, facts) : fixed.answer;
      return this.remember(memo, input, verdict);
    }
    // Quarantine evidence 2: repeated blocks in a window (a tunnel keeps trying; a stray false positive does not).
    const blocks = blocksSince(state, input.atMs - t.block_window_ms) + 1; // and this one
    if (blocks >= t.quarantine_after_blocks) {
      return this.remember(memo, input, verdictOf('quarantine', 'threshold', enforced, mode, clip(`${blocks} blocked in window; ${topSignals(score, 2)}`), score, facts, block));
    }
    if (sticky) {
      return verdictOf('nxdomain', 'sticky', enforced, mode, clip(`new name to ${split.registrable}, blocked ${Math.round((input.atMs - blockedAtMs) / 1000)} s ago`), score, facts, block);
    }
    return verdictOf('nxdomain', 'threshold', enforced, mode, clip(`score ${score.total.toFixed(2)}: ${topSignals(score)}`), score, facts, block);
  }

  /** Keeps `verdict` on the name's memo for reuse (see judge), and returns it. */
  private remember(memo: NameMemo | undefined, input: JudgeInput, verdict: Verdict): Verdict {
    if (memo !== undefined) {
      memo.verdict = verdict;
      memo.state = input.state;
      memo.version = input.state.version;
      memo.qtype = input.qtype;
      memo.ageDays = input.ageDays;
      memo.type = input.session.type;
      memo.atMs = input.atMs;
    }
    return verdict;
  }

  /**
   * The one writer of a session's window: told, right after a query was judged, whether it left for an upstream
   * (its information reached the domain's nameservers: counted now, whether or not an answer ever comes) and
   * whether its block is quarantine evidence; and, later, the rcode of an upstream's answer.
   */
  account(state: SessionState, event: AccountEvent): void {
    if (event.kind === 'answer') {
      noteAnswer(state, event.rcode, event.atMs, this.params);
      return;
    }
    const verdict = event.verdict;
    const block = verdict?.block;
    // a cache hit, a local answer, a list block: nothing to note, unless the domain's age was learnt
    if (block === undefined && !event.sent && event.ageDays === undefined) return;
    let facts = verdict?.facts;
    if (facts === undefined) {
      // No facts came with the verdict (a list verdict, a memoised name's shared zero-score answer): look the name
      // up again, without counting a sighting. Allow-listed names leave nothing in the window.
      const memo = this.names.get(event.name);
      if (this.listOf(event.name, memo) === 'allow') return;
      facts = this.factsOf(event.name, memo);
    }
    const { split, stats } = facts;
    const p = this.params;
    const before = state.version;
    if (block !== undefined) {
      noteBlock(state, event.atMs);
      if (block === 'scored') noteDomainBlock(state, noteAge(state, split.registrable, event.ageDays, event.atMs, p, split.platform), event.atMs);
    }
    if (event.sent) {
      noteAge(state, split.registrable, event.ageDays, event.atMs, p, split.platform);
      const alphabet = split.subdomain.length === 0 ? 'letters' : stats.alphabet;
      noteSent(state, { registrable: split.registrable, subdomain: split.subdomain, alphabet, atMs: event.atMs, platform: split.platform, internal: inZones(split.registrable, this.internal), qtype: event.qtype }, p);
    } else if (block === undefined) {
      // Only the age was learnt: a domain the session sent to changes account if it turns out old (or young).
      if (domainWindow(state, split.registrable) !== undefined) noteAge(state, split.registrable, event.ageDays, event.atMs, p, split.platform);
    } else {
      // A reused blocking verdict stays reusable after its own block is noted (judging afresh would give the same):
      // an observe-mode flood of cached names, or queries racing the closing gate, cost no re-scoring.
      const memo = this.names.get(event.name);
      if (memo !== undefined && memo.verdict === verdict && memo.state === state && memo.version === before) memo.version = state.version;
    }
  }

  /** DNS rebinding / SSRF: a public name whose A/AAAA answer points inside. undefined = fine. */
  judgeAnswer(name: string, addresses: readonly string[], session: SessionInfo): Verdict | undefined {
    if (!this.rebinding.enabled || addresses.length === 0) return undefined;
    const memo = name === this.lastName ? this.lastMemo : this.names.get(name);
    let inside: string | null;
    if (memo !== undefined && memo.checkedAddresses === addresses) {
      inside = memo.checkedInside;
    } else {
      inside = firstInsideAddress(this.rebinding.ranges, addresses);
      if (memo !== undefined) {
        memo.checkedAddresses = addresses;
        memo.checkedInside = inside;
      }
    }
    if (inside === null) return undefined;
    if (inZones(name, this.rebinding.allow)) return undefined;
    // Only public names (an ICANN suffix) are suspect: `printer.lan` or `db.internal` may point inside.
    if (parse(name).isIcann !== true) return undefined;
    const mode = this.modes[session.type];
    return verdictOf('nxdomain', 'rebinding', mode === 'enforce', mode, clip(`public name points at ${inside}`));
  }
}
