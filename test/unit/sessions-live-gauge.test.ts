// dnswarden_sessions_live has one writer: the directory's collect(), read at scrape time. Adding, replacing and
// expiring sessions shows in the gauge without anyone setting it.
import { describe, expect, it } from 'vitest';
import { Gauge, Registry } from 'prom-client';
import { parseConfig } from '../../src/ops/config.js';
import { SessionDirectory } from '../../src/sessions/directory.js';

async function live(registry: Registry): Promise<number | undefined> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'sessions_live');
  return (m as { values: { value: number }[] } | undefined)?.values[0]?.value;
}

describe('sessions_live', () => {
  it('follows the directory at every scrape, with no caller setting it', async () => {
    const registry = new Registry();
    const gauge = new Gauge({ name: 'sessions_live', help: 'h', registers: [registry] });
    let now = 1_000;
    const sessions = new SessionDirectory({ newState: () => ({}), historyMax: 10, keys: new Map(), maxTtlSec: 3600 });
    sessions.exposeLiveCount(gauge, () => now);
    expect(await live(registry)).toBe(0);

    const two = parseConfig({ sessions: { static: [
      { id: 'a', addresses: ['127.0.0.10/32'], user: 'u', role: 'r' },
      { id: 'b', addresses: ['127.0.0.11/32'], user: 'u', role: 'r', type: 'batch' },
    ] } }).sessions.static;
    sessions.setStatic(two, now);
    expect(await live(registry)).toBe(2);
    sessions.setStatic(two.slice(0, 1), now);
    expect(await live(registry)).toBe(1);

    // A restored registered session counts until its expiry, and not after it, without a sweep.
    sessions.restore([{ id: 'r', user: 'u', role: 'r', type: 'interactive', addresses: ['127.0.0.12'], origin: 'registered', expiresAtMs: 5_000, registeredAtMs: 900 }], now);
    expect(await live(registry)).toBe(2);
    now = 6_000;
    expect(await live(registry)).toBe(1);
  });
});
