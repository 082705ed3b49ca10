import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FastCounter, FastHistogram } from '../../src/ops/fast-histogram.js';
import { createMetrics, qtypeName, queryKey, rcodeName, verdictKey } from '../../src/ops/telemetry.js';

describe('FastHistogram', () => {
  it('exports cumulative buckets, sum and count per label value in the Prometheus text format', async () => {
    const registry = new Registry();
    const h = new FastHistogram<string>({ name: 'x_value', help: 'test', label: 'signal', buckets: [0.5, 0.1, 1], registry });
    for (const v of [0.05, 0.1, 0.3, 0.9, 2]) h.observe('a', v);
    h.observe('b', 0.5);
    const text = await registry.metrics();
    expect(text).toContain('# TYPE x_value histogram');
    expect(text).toContain('x_value_bucket{signal="a",le="0.1"} 2'); // 0.05 and 0.1 (le is inclusive)
    expect(text).toContain('x_value_bucket{signal="a",le="0.5"} 3');
    expect(text).toContain('x_value_bucket{signal="a",le="1"} 4');
    expect(text).toContain('x_value_bucket{signal="a",le="+Inf"} 5');
    expect(text).toContain('x_value_sum{signal="a"} 3.35');
    expect(text).toContain('x_value_count{signal="a"} 5');
    expect(text).toContain('x_value_bucket{signal="b",le="0.1"} 0');
    expect(text).toContain('x_value_bucket{signal="b",le="0.5"} 1');
    expect(text).toContain('x_value_count{signal="b"} 1');
  });

  it('takes several labels through labelsOf, and exports initial keys (all zero) before their first observation', async () => {
    const registry = new Registry();
    const labelsOf = (k: string) => ({ signal: k.split('|')[0]!, action: k.split('|')[1]! });
    const h = new FastHistogram<string>({ name: 'z_value', help: 'test', labelsOf, buckets: [0.5], registry, initialKeys: ['a|answer', 'a|nxdomain'] });
    let text = await registry.metrics();
    expect(text).toContain('z_value_bucket{signal="a",action="nxdomain",le="+Inf"} 0');
    expect(text).toContain('z_value_count{signal="a",action="answer"} 0');
    h.observe('a|nxdomain', 0.9);
    h.observe('b|answer', 0.1);
    text = await registry.metrics();
    expect(text).toContain('z_value_bucket{signal="a",action="nxdomain",le="0.5"} 0');
    expect(text).toContain('z_value_bucket{signal="a",action="nxdomain",le="+Inf"} 1');
    expect(text).toContain('z_value_sum{signal="b",action="answer"} 0.1');
    expect(text).toContain('z_value_count{signal="a",action="answer"} 0');
  });

  it('observeAt(positionOf(key, value)) counts as observe(key, value), and positions stay right as series are added', async () => {
    const registry = new Registry();
    const h = new FastHistogram<string>({ name: 'p_value', help: 'test', label: 'signal', buckets: [0.1, 0.5, 1], registry });
    const at = h.positionOf('a', 0.3);
    h.observeAt(at, 0.3);
    h.observe('b', 0.05); // a new series after the position was taken: the counts are re-laid
    h.observeAt(at, 0.3);
    h.observeAt(h.positionOf('b', 2), 2);
    const text = await registry.metrics();
    expect(text).toContain('p_value_bucket{signal="a",le="0.1"} 0');
    expect(text).toContain('p_value_bucket{signal="a",le="0.5"} 2');
    expect(text).toContain('p_value_sum{signal="a"} 0.6');
    expect(text).toContain('p_value_bucket{signal="b",le="0.1"} 1');
    expect(text).toContain('p_value_bucket{signal="b",le="1"} 1');
    expect(text).toContain('p_value_bucket{signal="b",le="+Inf"} 2');
    expect(text).toContain('p_value_sum{signal="b"} 2.05');
  });
});

describe('FastCounter', () => {
  it('counts per numeric key and exports each series with the labels its key maps back to', async () => {
    const registry = new Registry();
    const c = new FastCounter({ name: 'y_total', help: 'test', registry, labelsOf: (k) => ({ transport: k % 2 === 0 ? 'udp' : 'tcp', qtype: k < 2 ? 'A' : 'TXT' }) });
    for (let i = 0; i < 3; i++) c.inc(0);
    c.inc(3);
    const text = await registry.metrics();
    expect(text).toContain('# TYPE y_total counter');
    expect(text).toContain('y_total{transport="udp",qtype="A"} 3');
    expect(text).toContain('y_total{transport="tcp",qtype="TXT"} 1');
    expect(text).not.toContain('y_total{transport="udp",qtype="TXT"}'); // key 2 was never counted
  });

  it('exports initial keys as 0 before their first count (a label-less counter reads 0, not absent)', async () => {
    const registry = new Registry();
    new FastCounter({ name: 'z_total', help: 'test', registry, labelsOf: () => ({}), initialKeys: [0] });
    expect(await registry.metrics()).toMatch(/^z_total 0$/m);
  });
});

describe('per-query metric keys', () => {
  it('queryKey: every transport × qtype × rcode maps to its own key, and back to the same labels', async () => {
    const metrics = createMetrics();
    const seen = new Map<number, string>();
    for (const transport of ['udp', 'tcp'] as const) {
      for (const qtype of [1, 2, 5, 6, 12, 15, 16, 28, 33, 64, 65, 255, 0, 3, 999, 65535]) {
        for (const rcode of [0, 1, 2, 3, 4, 5, 6, 9, 15]) {
          const key = queryKey(transport, qtype, rcode);
          const labels = `${transport}|${qtypeName(qtype)}|${rcodeName(rcode)}`;
          // Distinct label sets never share a key; one label set always gets the same key.
          expect(seen.get(key) ?? labels).toBe(labels);
          seen.set(key, labels);
          metrics.queries.inc(key);
        }
      }
    }
    const text = await metrics.registry.metrics();
    expect(text).toContain('dnswarden_queries_total{transport="tcp",qtype="AAAA",rcode="NXDOMAIN"} 1');
    expect(text).toContain('dnswarden_queries_total{transport="udp",qtype="other",rcode="other"} 12'); // 0, 3, 999, 65535 × rcodes 6, 9, 15
    expect(text).toContain('dnswarden_queries_total{transport="udp",qtype="A",rcode="NOERROR"} 1');
  });

  it('verdictKey: every action × rule × mode × session type has its own key and labels', async () => {
    const metrics = createMetrics();
    const keys = new Set<number>();
    for (const action of ['answer', 'nxdomain', 'quarantine'] as const) {
      for (const rule of ['none', 'allow_list', 'deny_list', 'learned_deny', 'threshold', 'accumulation', 'rebinding', 'quarantined'] as const) {
        for (const mode of ['enforce', 'observe'] as const) {
          for (const type of ['interactive', 'batch', 'scheduled'] as const) {
            const key = verdictKey(action, rule, mode, type);
            keys.add(key);
            metrics.verdicts.inc(key);
          }
        }
      }
    }
    expect(keys.size).toBe(3 * 8 * 2 * 3);
    const text = await metrics.registry.metrics();
    expect(text).toContain('dnswarden_verdicts_total{action="quarantine",rule="accumulation",mode="observe",session_type="scheduled"} 1');
    expect(text).toContain('dnswarden_verdicts_total{action="answer",rule="none",mode="enforce",session_type="interactive"} 1');
  });
});

describe('the outcome recorder on a reused scored verdict', () => {
  it("observes the verdict's score and every signal once per query, and a new verdict its own values", async () => {
    const { createOutcomeRecorder } = await import('../../src/outcome/record.js');
    const { createLogger } = await import('../../src/ops/telemetry.js');
    const { verdictOf } = await import('../../src/policy/judge.js');
    const { Writable } = await import('node:stream');
    const metrics = createMetrics();
    const rec = createOutcomeRecorder({ metrics, log: createLogger('silent', new Writable({ write: (_c, _e, done) => done() })), refusedLog: undefined, nowMs: () => 0, repeatWindowMs: () => 1000 });
    const session = { id: 's1', user: 'u', role: 'r', type: 'interactive' as const, addresses: ['127.0.0.1/32'], origin: 'static' as const, expiresAtMs: Infinity, registeredAtMs: 0 };
    const q = { id: 1, name: 'x.example.com', type: 1, class: 1, rd: true, cd: false, question: Buffer.alloc(0), edns: undefined, maxReplyBytes: 1232, peer: { address: '127.0.0.1', port: 1, transport: 'udp' as const }, atMs: 0 };
    const first = verdictOf('quarantine', 'threshold', false, 'observe', 'r', { total: 0.8, signals: [{ id: 'label_entropy', value: 0.7 }, { id: 'name_length', value: 0.2 }] } as never);
    for (let i = 0; i < 3; i++) rec.verdict(q, session, first, 'e1', true);
    const second = verdictOf('quarantine', 'threshold', false, 'observe', 'r', { total: 0.9, signals: [{ id: 'label_entropy', value: 0.05 }] } as never);
    rec.verdict(q, session, second, 'e2', true);
    const text = await metrics.registry.metrics();
    const value = (series: string): number => Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);
    expect(value('dnswarden_signal_value_sum{signal="label_entropy",action="quarantine"}')).toBeCloseTo(3 * 0.7 + 0.05, 9);
    expect(value('dnswarden_signal_value_count{signal="label_entropy",action="quarantine"}')).toBe(4);
    expect(value('dnswarden_signal_value_bucket{signal="label_entropy",action="quarantine",le="0.1"}')).toBe(1); // the second verdict's 0.05
    expect(value('dnswarden_signal_value_count{signal="name_length",action="quarantine"}')).toBe(3);
    expect(value('dnswarden_score_sum{session_type="interactive"}')).toBeCloseTo(3 * 0.8 + 0.9, 9);
    expect(value('dnswarden_score_count{session_type="interactive"}')).toBe(4);
  });
});
