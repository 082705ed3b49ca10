// scoring/index.ts — the public surface of scoring: scoreQuery() combines the weighted signals into an
// explainable Score; DEFAULT_WEIGHTS and every scoring type live here. Pure: the name split, the domain age,
// the session state and the time are all handed in; nothing here reads a clock, the network or a file.
import { charClassSignal, charStats, domainAgeSignal, entropySignal, lengthSignal, qtypeSignal, type CharStats } from './lexical.js';
import type { SplitName } from './names.js';
import type { Score, Signal, Weights } from './types.js';
import { domainWindow, fanoutSignal, nxSignal, volumeSignal, type SessionState, type WindowParams } from './window.js';

export type { Score, Signal, SignalId, Weights } from './types.js';
export { SIGNAL_IDS } from './types.js';
export { DEFAULT_PLATFORMS, platformSet, splitName, trimName, type SplitName } from './names.js';
export { ENCODED_MIN, ENCODED_STREAM, looksEncoded, STREAM_MIN } from './encoded.js';
export { charStats, qtypeName, ramp, type Alphabet, type CharStats } from './lexical.js';
export {
  BLOCK_HISTORY, blocksSince, bytesPerMinute, encodedNovelBytes, RATE_TAU_MS, domainWindow, estimateNovelBytes, newSessionState, noteAge, noteAnswer, noteBlock, noteDomainBlock, noteSent, observeForwarded, QTYPE_CHOICE_BYTES, RARE_QTYPE_CHOICE_BYTES, COMMON_QTYPES, sessionNovelBytes, stuck, viewDomain,
  type DomainView, type DomainWindow, type ForwardEvent, type SentEvent, type SessionState, type WindowParams,
} from './window.js';

/**
 * Calibrated on fixtures/corpora (README there): the lexical trio decides per query — a long, near-random,
 * encoded-looking subdomain (a bulk tunnel query) scores 0.87–1.3 on the corpus — while the behavioural signals only tip a name that already
 * looks encoded (no single behavioural signal can block a plain-looking name on its own).
 */
export const DEFAULT_WEIGHTS: Weights = {
  label_entropy: 0.45,
  char_class: 0.3,
  name_length: 0.45,
  domain_age: 0.1,
  qtype: 0.1,
  fanout: 0.15,
  info_volume: 0.15,
  nx_ratio: 0.1,
};

/** Everything scoring is configured by (snake_case: the `scoring` config section passes straight through). */
export interface ScoringParams extends WindowParams {
  readonly weights: Weights;
  readonly unknown_age_value: number;
}

/** What a name alone decides: its split, character statistics and the three lexical signals. */
export interface NameFacts {
  readonly split: SplitName;
  readonly stats: CharStats;
  readonly lexical: readonly [Signal, Signal, Signal];
}

/**
 * Below these a subdomain cannot score on any lexical signal: entropy counts past 30 characters, char_class
 * past 24, name_length past 64 characters, a 40-character label or 6 labels (lexical.ts). Most names an agent
 * sends are this short (`www`, `api.v2`), so they get three shared zero signals instead of three built ones
 * with formatted reasons (+7 % cache-miss QPS with scoring on, A/B rounds of two builds); a unit test checks
 * that the full computation gives 0 for every such name.
 */
export const SHORT_SUBDOMAIN_CHARS = 24;
export const SHORT_SUBDOMAIN_LABELS = 6;
export const SHORT_SUBDOMAIN_REASON = `subdomain of ≤ ${SHORT_SUBDOMAIN_CHARS} chars in ≤ ${SHORT_SUBDOMAIN_LABELS} labels: too short to carry data`;

type Lexical = NameFacts['lexical'];
let zeroLexicalFor: { readonly weights: Weights; readonly lexical: Lexical } | undefined;

/** The shared zero lexical signals for `weights` (one config's weights at a time, rebuilt when they change). */
function zeroLexical(weights: Weights): Lexical {
  if (zeroLexicalFor?.weights !== weights) {
    const zero = (id: Signal['id'], weight: number): Signal => Object.freeze({ id, value: 0, weight, reason: SHORT_SUBDOMAIN_REASON });
    zeroLexicalFor = { weights, lexical: Object.freeze([zero('label_entropy', weights.label_entropy), zero('char_class', weights.char_class), zero('name_length', weights.name_length)] as const) };
  }
  return zeroLexicalFor.lexical;
}

/** The per-name part of scoring; the same name always gives the same facts, so callers may memoise them. */
export function nameFacts(split: SplitName, weights: Weights): NameFacts {
  const stats = charStats(split.subdomain);
  if (!split.platform && split.subdomain.length <= SHORT_SUBDOMAIN_CHARS && split.subLabelCount <= SHORT_SUBDOMAIN_LABELS) {
    return { split, stats, lexical: zeroLexical(weights) };
  }
  return {
    split,
    stats,
    lexical: [entropySignal(split, stats, weights.label_entropy), charClassSignal(split, stats, weights.char_class), lengthSignal(split, weights.name_length)],
  };
}

export interface ScoreInput {
  /** Precomputed nameFacts() for this name (with the same weights); computed here when absent. */
  readonly facts?: NameFacts;
  readonly split: SplitName;
  /** charStats(split.subdomain), computed once by the caller and reused for the volume estimate. */
  readonly stats: CharStats;
  readonly qtype: number;
  readonly ageDays: number | undefined;
  readonly state: SessionState;
  readonly atMs: number;
}

export function scoreQuery(input: ScoreInput, p: ScoringParams): Score {
  const w = p.weights;
  const win = domainWindow(input.state, input.split.registrable);
  const [entropy, charClass, length] = input.facts?.lexical ?? nameFacts(input.split, w).lexical;
  const signals: Signal[] = [
    entropy,
    charClass,
    length,
    domainAgeSignal(input.ageDays, p.young_domain_days, p.unknown_age_value, w.domain_age),
    qtypeSignal(input.qtype, w.qtype),
    fanoutSignal(win, input.atMs, p, w.fanout),
    volumeSignal(win, p, w.info_volume),
    nxSignal(input.state, input.atMs, p, w.nx_ratio),
  ];
  let total = 0;
  for (const s of signals) total += s.value * s.weight;
  return { total, signals };
}

/** The top contributions as one short line, e.g. "label_entropy 0.45, name_length 0.40" (for EDE text). */
export function topSignals(score: Score, max = 3): string {
  const top = score.signals.filter((s) => s.value * s.weight >= 0.01).sort((a, b) => b.value * b.weight - a.value * a.weight);
  return top
    .slice(0, max)
    .map((s) => `${s.id} ${(s.value * s.weight).toFixed(2)}`)
    .join(', ');
}
