import { describe, expect, it } from 'vitest';
import { base32, base64, hex, prng } from '../../fixtures/corpora/generate.mjs';
import {
  DEFAULT_WEIGHTS, SHORT_SUBDOMAIN_CHARS, SHORT_SUBDOMAIN_LABELS, SHORT_SUBDOMAIN_REASON, SIGNAL_IDS, charStats, nameFacts, newSessionState, platformSet,
  scoreQuery, splitName, topSignals, type ScoringParams,
} from '../../scoring/index.js';
import { charClassSignal, entropySignal, lengthSignal } from '../../scoring/lexical.js';

const P: ScoringParams = {
  weights: DEFAULT_WEIGHTS, unknown_age_value: 0.3, fanout_window_ms: 600_000, fanout_high: 60, volume_idle_ms: 86_400_000,
  volume_high_bytes: 1024, young_domain_days: 30, max_domains_per_session: 256, max_names_per_session: 4096, max_grams_per_session: 16_384, repeat_floor_ms: 30_000,
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

describe('nameFacts: short subdomains', () => {
  const CODEC_LIST = [hex, base32, base64, (b: Uint8Array) => Buffer.from(b).toString('latin1')];
  it('every subdomain of ≤ 24 chars in ≤ 6 labels scores 0 on all three lexical signals when computed in full', () => {
    const r = prng(11);
    let checked = 0;
    for (let i = 0; i < 5000; i++) {
      const codec = CODEC_LIST[i % CODEC_LIST.length]!;
      const labels = 1 + (i % SHORT_SUBDOMAIN_LABELS);
      const parts: string[] = [];
      for (let l = 0; l < labels; l++) parts.push(codec(r.bytes(1 + (i % 17))).replace(/\./g, 'x').slice(0, 24) || 'a');
      const sub = parts.join('.').slice(0, SHORT_SUBDOMAIN_CHARS).replace(/\.+$/, '').toLowerCase();
      if (sub.length === 0 || sub.startsWith('.') || sub.includes('..')) continue;
      const split = splitName(`${sub}.example.net`, platforms);
      expect(split.subdomain).toBe(sub);
      const stats = charStats(split.subdomain);
      const full = [entropySignal(split, stats, 1), charClassSignal(split, stats, 1), lengthSignal(split, 1)];
      expect(full.map((s) => s.value), sub).toEqual([0, 0, 0]);
      const facts = nameFacts(split, DEFAULT_WEIGHTS);
      expect(facts.lexical.map((s) => [s.id, s.value, s.weight, s.reason])).toEqual([
        ['label_entropy', 0, DEFAULT_WEIGHTS.label_entropy, SHORT_SUBDOMAIN_REASON],
        ['char_class', 0, DEFAULT_WEIGHTS.char_class, SHORT_SUBDOMAIN_REASON],
        ['name_length', 0, DEFAULT_WEIGHTS.name_length, SHORT_SUBDOMAIN_REASON],
      ]);
      expect(facts.stats).toEqual(stats);
      checked++;
    }
    expect(checked).toBeGreaterThan(4000);
  });

  it('one character longer, or one label more, is computed in full', () => {
    const longer = splitName(`${'a1'.repeat(12)}b.example.net`, platforms); // 25 chars
    expect(nameFacts(longer, DEFAULT_WEIGHTS).lexical[0].reason).not.toBe(SHORT_SUBDOMAIN_REASON);
    const deeper = splitName('a.b.c.d.e.f.g.example.net', platforms); // 7 labels
    const facts = nameFacts(deeper, DEFAULT_WEIGHTS);
    expect(facts.lexical[2].reason).toBe('subdomain 13 chars, longest label 1, 7 labels');
    expect(facts.lexical[2].value).toBeGreaterThan(0);
  });

  it('a platform name keeps its platform reason', () => {
    const split = splitName('abc.cloudfront.net', platforms);
    expect(nameFacts(split, DEFAULT_WEIGHTS).lexical.map((s) => s.reason)).toEqual(['platform apex', 'platform apex', 'platform apex']);
  });
});
