// scoring/types.ts — the vocabulary of scoring, shared by every scoring module and re-exported by index.ts.

/** Closed set, spelled identically in code, config (`scoring.weights.*`), metric labels and log fields. */
export type SignalId =
  | 'label_entropy'
  | 'char_class'
  | 'name_length'
  | 'domain_age'
  | 'qtype'
  | 'fanout'
  | 'info_volume'
  | 'nx_ratio';

export const SIGNAL_IDS: readonly SignalId[] = [
  'label_entropy', 'char_class', 'name_length', 'domain_age', 'qtype', 'fanout', 'info_volume', 'nx_ratio',
];

/** One contribution: `value` in [0,1], multiplied by `weight` into the total; `reason` says why in a few words. */
export interface Signal {
  readonly id: SignalId;
  readonly value: number;
  readonly weight: number;
  readonly reason: string;
}

/** total = Σ value·weight over `signals`: explainable by construction. */
export interface Score {
  readonly total: number;
  readonly signals: readonly Signal[];
}

export type Weights = Readonly<Record<SignalId, number>>;
