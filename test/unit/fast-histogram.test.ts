import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FastCounter, FastHistogram } from '../../src/fast-histogram.js';

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
});

describe('FastCounter', () => {
  it('counts per key and exports each series with the labels given at its first use', async () => {
    const registry = new Registry();
    const c = new FastCounter({ name: 'y_total', help: 'test', registry });
    for (let i = 0; i < 3; i++) c.inc('udp|A', () => ({ transport: 'udp', qtype: 'A' }));
    c.inc('tcp|TXT', () => ({ transport: 'tcp', qtype: 'TXT' }));
    const text = await registry.metrics();
    expect(text).toContain('# TYPE y_total counter');
    expect(text).toContain('y_total{transport="udp",qtype="A"} 3');
    expect(text).toContain('y_total{transport="tcp",qtype="TXT"} 1');
  });
});
