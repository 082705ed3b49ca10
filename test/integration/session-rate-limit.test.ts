// The per-session rate limit over real UDP: a burst past policy.session_types.<type>.rate_limit is answered in
// full — REFUSED with an EDE that says "rate limited", never dropped (not even by the REFUSED rate limit of
// server.refused_rate_limit) — and counted; another session of the same type is unaffected; a type without a
// limit (the default) is never limited.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { udpBurst } from '../helpers/dns-client.js';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { metricValue, startWarden, TEST_SESSION, type Warden } from '../helpers/warden.js';

const BURST = 10;
const QPS = 2;
const SENT = 60;

describe('per-session rate limit', () => {
  let upstream: Upstream;
  let warden: Warden;

  beforeAll(async () => {
    upstream = await startUpstream();
    warden = await startWarden({
      sessions: {
        static: [
          { ...TEST_SESSION, addresses: [...TEST_SESSION.addresses] },
          { id: 'batch-a', addresses: ['127.0.0.3/32'], type: 'batch', user: 'ci', role: 'job' },
          { id: 'batch-b', addresses: ['127.0.0.4/32'], type: 'batch', user: 'ci', role: 'job' },
        ],
      },
      policy: { session_types: { batch: { rate_limit: { qps: QPS, burst: BURST } } } },
    }, { upstream });
  });
  afterAll(async () => {
    await warden?.close();
    await upstream?.stop();
  });

  it('answers a burst over the limit with REFUSED + EDE "rate limited", none unanswered; another session unaffected', async () => {
    const started = Date.now();
    // udpBurst fails unless every query gets its reply.
    const replies = await udpBurst(warden.dns, Array.from({ length: SENT }, () => ({ name: FIXTURE.a.name, type: 'A' })), { bind: '127.0.0.3', timeoutMs: 10_000 });
    const elapsedSec = (Date.now() - started) / 1000;
    expect(replies).toHaveLength(SENT);
    const answered = replies.filter((r) => r.rcode === 'NOERROR');
    const limited = replies.filter((r) => r.rcode === 'REFUSED');
    expect(answered.length + limited.length).toBe(SENT);
    expect(answered.length).toBeGreaterThanOrEqual(BURST);
    expect(answered.length).toBeLessThanOrEqual(BURST + Math.ceil(QPS * elapsedSec) + 1); // + refill while the burst ran
    expect(limited.length).toBeGreaterThan(0);
    for (const r of limited) {
      expect(r.ede?.code).toBe(0);
      expect(r.ede?.text).toMatch(/^rate limited/);
      expect(r.tc).toBe(false); // a full answer, not an RRL slip
    }
    for (const r of answered) expect(r.answers.map((a) => a.data)).toEqual([FIXTURE.a.address]);

    // Another session of the same type has its own bucket.
    const other = await udpBurst(warden.dns, Array.from({ length: BURST }, () => ({ name: FIXTURE.a.name, type: 'A' })), { bind: '127.0.0.4' });
    expect(other.map((r) => r.rcode)).toEqual(Array(BURST).fill('NOERROR'));
    // A type without a rate_limit (the default) is not limited.
    const unlimited = await udpBurst(warden.dns, Array.from({ length: SENT }, () => ({ name: FIXTURE.a.name, type: 'A' })), { bind: '127.0.0.1' });
    expect(unlimited.filter((r) => r.rcode === 'NOERROR')).toHaveLength(SENT);

    const text = await warden.app.metricsText();
    expect(metricValue(text, 'dnswarden_session_rate_limited_total', { session_type: 'batch' })).toBe(limited.length);
    expect(metricValue(text, 'dnswarden_session_rate_limited_total', { session_type: 'interactive' })).toBe(0);
    expect(metricValue(text, 'dnswarden_refused_total', { reason: 'rate_limited' })).toBe(limited.length);
    expect(metricValue(text, 'dnswarden_refused_limited_total') ?? 0).toBe(0); // the REFUSED RRL left them alone
  });

  it('lets the session through again once its bucket refills', async () => {
    // 1 / QPS seconds per token; poll rather than sleep a fixed time (CPU load).
    const deadline = Date.now() + 10_000;
    let rcode = '';
    while (Date.now() < deadline) {
      const [r] = await udpBurst(warden.dns, [{ name: FIXTURE.a.name, type: 'A' }], { bind: '127.0.0.3' });
      rcode = r!.rcode;
      if (rcode === 'NOERROR') break;
      await new Promise((ok) => setTimeout(ok, 100));
    }
    expect(rcode).toBe('NOERROR');
  });
});
