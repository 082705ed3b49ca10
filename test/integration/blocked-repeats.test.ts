// The cost of blocked traffic: a flooding or quarantined session gets its NXDOMAIN + EDE every time, and
// metrics count every query, but its repeated blocks are one log line with a count per window (and one
// history row with a count), not a line and a row per query. Over real sockets, a real NSD upstream behind.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { createLogger } from '../../src/ops/telemetry.js';
import { query } from '../helpers/dns-client.js';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { CLI } from '../helpers/serve-process.js';
import { metricValue, startWarden } from '../helpers/warden.js';

const SECRETS = [
  'mzxw6ytboi3tqnbrgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmr',
  'kfvgs4tfmvxgk3tufzqxg43pn5xw4zlsmfwgs3temvzhs5dfnzsxg2lpnzsxa7q',
];
const exfilName = (i: number): string => `${SECRETS[i % SECRETS.length]}.x${i}.exfil.dnswarden.test`;
const batchSession = { static: [{ id: 'job-7', addresses: ['127.0.0.1/32'], type: 'batch', user: 'carol', role: 'etl' }] };

type LogLine = Record<string, unknown> & { event?: string; rule?: string; action?: string; count?: number; msg?: string };

/** A logger at warn writing JSON lines to memory, as `serve` writes them to stdout. */
function capturedLog(): { logger: ReturnType<typeof createLogger>; lines: () => LogLine[] } {
  let text = '';
  const sink = new Writable({
    write(chunk: Buffer | string, _enc, done) {
      text += chunk.toString();
      done();
    },
  });
  return { logger: createLogger('warn', sink), lines: () => text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as LogLine) };
}

async function until<T>(what: string, fn: () => T | undefined, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let upstream: Upstream;
beforeAll(async () => {
  upstream = await startUpstream();
});
afterAll(async () => {
  await upstream?.stop();
});

describe('repeated blocks are aggregated', () => {
  it('a quarantined session: every query gets NXDOMAIN + EDE, one full log line, then one line with the count; one history row', async () => {
    const log = capturedLog();
    const warden = await startWarden({ sessions: batchSession, logging: { repeat_window_ms: 600_000 } }, { upstream, logger: log.logger });
    let closed = false;
    onTestFinished(() => (closed ? undefined : warden.close()));
    // batch: the second blocked exfil query quarantines the session.
    for (let i = 0; i < 2; i++) expect((await query({ server: warden.dns, name: exfilName(i), type: 'TXT' })).rcode).toBe('NXDOMAIN');
    const flood = 40;
    for (let i = 0; i < flood; i++) {
      // Distinct names, both transports: the gate does not care, and neither does the aggregation.
      const reply = await query({ server: warden.dns, name: i % 2 === 0 ? `n${i}.${FIXTURE.a.name}` : exfilName(i + 2), type: 'A', transport: i % 4 === 1 ? 'tcp' : 'udp' });
      expect(reply.rcode, `query ${i}`).toBe('NXDOMAIN');
      expect(reply.ede, `query ${i}`).toEqual({ code: 15, text: expect.stringMatching(/^session quarantined \(qr-[0-9a-f]{8}-[0-9a-z]+\)$/) });
    }
    // Metrics count every query.
    const metrics = await warden.app.metricsText();
    expect(metricValue(metrics, 'dnswarden_verdicts_total', { action: 'nxdomain', rule: 'quarantined' })).toBe(flood);

    // History: one row for the whole flood, with its count.
    const history = await warden.admin('/v1/sessions/job-7/queries');
    const rows = (history.json as { queries: { rule: string; name: string; count?: number; atMs: number; lastAtMs?: number }[] }).queries.filter((r) => r.rule === 'quarantined');
    expect(rows).toHaveLength(1);
    expect(rows[0]!.count).toBe(flood);
    expect(rows[0]!.name).toBe(`n0.${FIXTURE.a.name}`);
    expect(rows[0]!.lastAtMs).toBeGreaterThanOrEqual(rows[0]!.atMs);
    // The analyst's table says how many the row stands for.
    // Asynchronously: the server answering the CLI runs in this process.
    const { stdout: table } = await promisify(execFile)(process.execPath, [CLI, 'sessions', 'queries', 'job-7', '--url', warden.adminUrl, '--token', warden.adminToken], { encoding: 'utf8', timeout: 30_000 });
    expect(table).toMatch(new RegExp(`nxdomain ×${flood} +quarantined .*n0\\.www\\.dnswarden\\.test`));

    // Before close: the first gate block logged in full, the rest only counted so far.
    const gateLines = (): LogLine[] => log.lines().filter((l) => l.rule === 'quarantined');
    expect(gateLines()).toHaveLength(1);
    expect(gateLines()[0]).toMatchObject({ event: 'verdict', action: 'nxdomain', session: 'job-7', name: `n0.${FIXTURE.a.name}`, msg: 'query nxdomain' });

    // Close: the count is logged, nothing lost.
    await warden.close();
    closed = true;
    const lines = gateLines();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ event: 'verdict_repeat', count: flood - 1, action: 'nxdomain', rule: 'quarantined', enforced: true, session: 'job-7', user: 'carol', last_name: exfilName(flood + 1), msg: `query nxdomain: ${flood - 1} more like this` });
    expect(lines[1]!['first_event_id']).toMatch(/^qr-/);
    // The blocks before the quarantine (scored, enforced: evidence each) are still logged one by one.
    expect(log.lines().filter((l) => l.event === 'verdict' && l.rule === 'threshold').map((l) => l.action)).toEqual(['nxdomain', 'quarantine']);
  });

  it('observe mode: every would-be block is answered and counted; the log has a line per kind and window, with counts', async () => {
    const log = capturedLog();
    const warden = await startWarden({ sessions: batchSession, policy: { mode: 'observe' }, logging: { repeat_window_ms: 600_000 } }, { upstream, logger: log.logger });
    let closed = false;
    onTestFinished(() => (closed ? undefined : warden.close()));
    const n = 30;
    for (let i = 0; i < n; i++) {
      const reply = await query({ server: warden.dns, name: exfilName(0), type: 'TXT' });
      expect(reply.ede?.code, `query ${i}`).not.toBe(15); // answered: no block in observe mode
    }
    const metrics = await warden.app.metricsText();
    const wouldBlock = (metricValue(metrics, 'dnswarden_verdicts_total', { action: 'nxdomain', mode: 'observe' }) ?? 0) + (metricValue(metrics, 'dnswarden_verdicts_total', { action: 'quarantine', mode: 'observe' }) ?? 0);
    expect(wouldBlock).toBe(n);
    await warden.close();
    closed = true;
    const verdictLines = log.lines().filter((l) => l.event === 'verdict' || l.event === 'verdict_repeat');
    // Far fewer lines than queries, and the full lines plus the counts account for every would-be block.
    expect(verdictLines.length).toBeLessThanOrEqual(6);
    const accounted = verdictLines.reduce((a, l) => a + (l.event === 'verdict' ? 1 : l.count!), 0);
    expect(accounted).toBe(n);
    for (const l of verdictLines) expect(l).toMatchObject({ enforced: false, mode: 'observe' });
  });

  it('a window that has passed is logged by the timer, and the next block opens a new window with a full line', async () => {
    const log = capturedLog();
    const warden = await startWarden({ sessions: batchSession, policy: { deny: ['blocked.dnswarden.test'] }, logging: { repeat_window_ms: 300 } }, { upstream, logger: log.logger });
    onTestFinished(() => warden.close());
    const denied = (): Promise<void> => query({ server: warden.dns, name: 'x.blocked.dnswarden.test', type: 'A' }).then((r) => {
      expect(r.rcode).toBe('NXDOMAIN');
      expect(r.ede?.code).toBe(17);
    });
    const denyLines = (): LogLine[] => log.lines().filter((l) => l.rule === 'deny_list');
    // Five at once: well within one window however loaded the machine is.
    await Promise.all([0, 1, 2, 3, 4].map(() => denied()));
    const repeat = await until('the timer to log the count', () => denyLines().find((l) => l.event === 'verdict_repeat'));
    const full = denyLines().filter((l) => l.event === 'verdict');
    // However the five fell into windows, every one is accounted for, and the count came without closing.
    expect(full.length + denyLines().filter((l) => l.event === 'verdict_repeat').reduce((a, l) => a + l.count!, 0)).toBe(5);
    expect(repeat.count).toBeGreaterThanOrEqual(1);
    await denied();
    await until('a new full line', () => (denyLines().filter((l) => l.event === 'verdict').length > full.length ? true : undefined));
  });
});
