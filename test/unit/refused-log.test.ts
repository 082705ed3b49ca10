// RefusedLog (src/ops/refused-log.ts): refused sources are visible in the log without one line per query —
// the first refusal from a source at once, then at most one line per source per interval with the count
// by reason; a source quiet for a whole interval is forgotten (its next refusal is logged at once);
// past 10 000 tracked sources the rest are summed up in one line; close() logs what is still counted.
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { RefusedLog } from '../../src/ops/refused-log.js';
import { createLogger } from '../../src/ops/telemetry.js';

type Line = Record<string, unknown> & { msg: string };

function capture(): { lines: Line[]; log: ReturnType<typeof createLogger> } {
  const lines: Line[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Line);
      done();
    },
  });
  return { lines, log: createLogger('info', sink) };
}

const open: RefusedLog[] = [];
afterEach(() => { for (const r of open.splice(0)) r.close(); });

// A long interval for the timer, so only the explicit flush(now) calls below decide (no wall-clock race).
function refusedLog(log: ReturnType<typeof createLogger>): RefusedLog {
  const r = new RefusedLog(log, 60_000, () => 0);
  open.push(r);
  return r;
}

describe('RefusedLog', () => {
  it('logs the first refusal from a source at once, then one summary per interval with counts by reason', () => {
    const { lines, log } = capture();
    const r = refusedLog(log);
    r.note('192.0.2.7', 'no_session', 1000);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 30, event: 'refused', source: '192.0.2.7', reason: 'no_session', count: 1, msg: 'query refused' });
    for (let i = 0; i < 40; i++) r.note('192.0.2.7', i % 4 === 0 ? 'unsupported' : 'no_session', 1000 + i);
    r.flush(30_000); // within the interval: nothing
    expect(lines).toHaveLength(1);
    r.flush(61_000);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ level: 30, source: '192.0.2.7', count: 40, reasons: { no_session: 30, unsupported: 10 }, interval_s: 60, msg: 'queries refused' });
    r.note('192.0.2.7', 'expired', 62_000);
    r.flush(100_000); // an interval since the last line has not passed
    expect(lines).toHaveLength(2);
    r.flush(121_000);
    expect(lines[2]).toMatchObject({ source: '192.0.2.7', count: 1, reasons: { expired: 1 } });
  });

  it('forgets a source quiet for a whole interval: its next refusal is logged at once again', () => {
    const { lines, log } = capture();
    const r = refusedLog(log);
    r.note('2001:db8::1', 'expired', 0);
    r.flush(60_000); // nothing since the first line: forgotten, no line
    expect(lines).toHaveLength(1);
    r.note('2001:db8::1', 'expired', 70_000);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ source: '2001:db8::1', reason: 'expired', count: 1, msg: 'query refused' });
  });

  it('tracks at most 10 000 sources; the rest are one summary line, and close() logs what is still counted', () => {
    const { lines, log } = capture();
    const r = refusedLog(log);
    for (let i = 0; i < 10_050; i++) r.note(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, 'no_session', 0);
    expect(lines).toHaveLength(10_000);
    r.note('10.0.0.0', 'no_session', 1); // a tracked source, counted for its summary
    r.close();
    const others = lines.filter((l) => l['source'] === 'other');
    expect(others).toHaveLength(1);
    expect(others[0]).toMatchObject({ refusals_from_untracked_sources: 50, reasons: { no_session: 50 }, tracked_sources: 10_000 });
    expect(lines.filter((l) => l['source'] === '10.0.0.0')).toHaveLength(2);
    expect(lines.find((l) => l['source'] === '10.0.0.0' && l['count'] === 1 && l.msg === 'queries refused')).toBeDefined();
  });
});
