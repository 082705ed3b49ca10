// src/policy/name-memo.ts — what the policy remembers about a name it has judged before, and when the verdict it gave
// may be given again without judging afresh. A memo lives in Policy's map of repeated names (judge.ts writes it) and,
// as an opaque handle, beside the name's cached answer (pipeline.ts keeps it on the cache entry), so a cache hit
// reaches it through the entry it is answered from instead of a second map. Pure data and checks: no maps, no clock.
import type { NameFacts, SessionState } from '../../scoring/index.js';
import type { RpzMatch } from '../zones/rpz.js';
import type { SessionType } from './schema.js';

/** Which list a name is on; an RpzMatch: a policy zone's trigger decides (a PASSTHRU trigger reads null: scored, deny lists skipped). */
export type Listed = 'allow' | 'deny' | 'callback' | 'learned' | 'denied_by_hand' | RpzMatch | null;

/**
 * Which list a name is on, its scoring facts once computed, its last reusable verdict and its last rebinding check —
 * in one flat object: a cache hit reads the memo and nothing behind it (a separate object per reuse and per check was
 * two more pointers chased, and cache lines missed, per query). V: judge.ts's Verdict (a parameter, so this module
 * imports nothing of judge.ts).
 */
export interface NameMemo<V> {
  /** The Policy generation the memo was made in (see nextGeneration): a memo of any other is never read. */
  readonly generation: number;
  readonly listed: Listed;
  facts: NameFacts | undefined;
  /** The last answer (or quarantine) verdict for this name, reusable while the inputs below hold (see reusableVerdict). */
  verdict: V | undefined;
  state: SessionState | undefined;
  /** The window's version the verdict was judged (or, for a block, last noted) against. */
  version: number;
  qtype: number;
  ageDays: number | undefined;
  type: SessionType | undefined;
  atMs: number;
  /** The rebinding check of the last answer's addresses (a cached answer hands every hit the same array), and its result. */
  checkedAddresses: readonly string[] | undefined;
  checkedInside: string | null;
}

declare const opaque: unique symbol;
/** A memo as its holders outside the policy see it: a token to hand back, nothing to read. */
export type NameMemoHandle = { readonly [opaque]: 'NameMemo' };

export const handleOf = <V>(memo: NameMemo<V> | undefined): NameMemoHandle | undefined => memo as unknown as NameMemoHandle | undefined;
export const memoOfHandle = <V>(handle: NameMemoHandle | undefined): NameMemo<V> | undefined => handle as unknown as NameMemo<V> | undefined;

let generations = 0;
/**
 * A generation no memo has yet: a Policy takes one when it is built and another whenever it forgets its memos (its
 * lists changed, or the map was full). Unique across policies, so a handle kept from before a SIGHUP or a list change
 * is simply not read.
 */
export function nextGeneration(): number {
  return ++generations;
}

export function newMemo<V>(generation: number, listed: Listed): NameMemo<V> {
  return {
    generation, listed, facts: undefined, verdict: undefined, state: undefined, version: -1, qtype: -1, ageDays: undefined, type: undefined, atMs: -Infinity,
    checkedAddresses: undefined, checkedInside: null,
  };
}

/**
 * How long an answer verdict is reused for the same name, session, query type and domain age while the
 * session's window is unchanged (cache hits repeat names within this time): only the decay of fan-out and
 * NXDOMAIN ratio moves the score then, and at most a hundredth of their half-life (fanout_window_ms) moves
 * them by under 0.7 %. Recomputing it on every hit was a tenth of a cache hit's cost (`npm run bench`).
 */
export const ANSWER_REUSE_MAX_MS = 1000;

/**
 * The verdict judge() last gave this name, if judging afresh now would give the same: the same session window
 * (state object and version), query type, domain age and session type, within `reuseMs` of it. Small on purpose:
 * V8 inlines it into the cache hit's path.
 */
export function reusableVerdict<V>(memo: NameMemo<V>, qtype: number, type: SessionType, state: SessionState, ageDays: number | undefined, atMs: number, reuseMs: number): V | undefined {
  return memo.verdict !== undefined && memo.state === state && memo.version === state.version && memo.qtype === qtype && memo.ageDays === ageDays
    && memo.type === type && atMs >= memo.atMs && atMs - memo.atMs < reuseMs ? memo.verdict : undefined;
}
