import { describe, expect, it } from 'vitest';
import { hex, prng } from '../../fixtures/corpora/generate.mjs';
import { DEFAULT_WEIGHTS, SIGNAL_IDS, charStats, newSessionState, platformSet, scoreQuery, splitName, topSignals, type ScoringParams } from '../../scoring/index.js';

const P: ScoringParams = {
  weights: DEFAULT_WEIGHTS, unknown_age_value: 0.3, fanout_window_ms: 600_000, fanout_high: 60, volume_idle_ms: 86_400_000,
  volume_high_bytes: 1024, young_domain_days: 30, max_domains_per_session: 256, max_names_per_session: 4096, max_grams_per_session: 16_384,
};
const platforms = platformSet();
const score = (name: string, qtype: number, ageDays: number | undefined) => {
  const split = splitName(name, platforms);
  return scoreQuery({ split, stats: charStats(split.subdomain), qtype, ageDays, state: newSessionState(), atMs: 0 }, P);
};

describe('scoreQuery', () => {
  it('lists every signal once, and the total is Σ value × weight', () => {
    const s = score('mzxw6ytboi3tqnbrgq2dmnzyhe4dqmrtgu2dmnzzhe4tsmbqgezdgnbvgy3tqojqgeztkmzsgu3tmnzyheyq.gq2dmnzy.t.xfl-cdn.net', 10, 2);
    expect(s.signals.map((x) => x.id)).toEqual(SIGNAL_IDS);
    const sum = s.signals.reduce((a, x) => a + x.value * x.weight, 0);
    expect(s.total).toBeCloseTo(sum, 12);
    for (const x of s.signals) {
      expect(x.value).toBeGreaterThanOrEqual(0);
      expect(x.value).toBeLessThanOrEqual(1);
      expect(x.weight).toBe(DEFAULT_WEIGHTS[x.id]);
    }
    expect(s.total).toBeGreaterThan(1);
  });

  it('an ordinary name scores near zero', () => {
    expect(score('www.github.com', 1, 400).total).toBe(0);
    expect(score('www.github.com', 1, undefined).total).toBeCloseTo(0.03, 10); // unknown age only
  });

  it('topSignals names the biggest contributions for the EDE text', () => {
    const h = hex(prng(3).bytes(60));
    const s = score(`${h.slice(0, 60)}.${h.slice(60)}.t.xfl-cdn.net`, 16, 400);
    // name_length: a 60-char label is (60 − 40) / 23 of the way to full → 0.87 × 0.45
    expect(topSignals(s)).toBe('label_entropy 0.45, name_length 0.39, char_class 0.30');
    expect(topSignals(s, 1)).toBe('label_entropy 0.45');
    expect(topSignals(score('www.github.com', 1, 400))).toBe('');
  });
});
