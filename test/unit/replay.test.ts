import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hex, prng } from '../../fixtures/corpora/generate.mjs';
import { WardenError } from '../../src/errors.js';
import { policySchema, scoringSchema } from '../../src/policy/schema.js';
import { Policy } from '../../src/policy/judge.js';
import { figuresByKind, formatReport, parseJsonl, replayFile, replayLines } from '../../src/policy/replay.js';

const config = { policy: policySchema.parse({}), scoring: scoringSchema.parse({}) };
const policy = () => new Policy(config.policy, config.scoring);
const bulk = (seed: number) => {
  const h = hex(prng(seed).bytes(100));
  return `${h.slice(0, 63)}.${h.slice(63, 126)}.${h.slice(126, 189)}.${h.slice(189)}.xfl-cdn.net`;
};

describe('parseJsonl', () => {
  it('reads query-log lines and dnswarden verdict-log lines (name, qtype by name)', () => {
    const lines = parseJsonl(
      '{"ts":1,"session":"a","qname":"www.example.com","qtype":1}\n\n' +
        '{"event":"verdict","ts":2,"session":"b","session_type":"batch","name":"x.example.com","qtype":"TXT","action":"nxdomain"}\n' +
        '{"ts":3,"session":"c","qname":"y.example.com","qtype":"TYPE65399","label":"exfil","age_days":2}\n',
    );
    expect(lines.map((l) => [l.session, l.qname, l.qtype, l.session_type])).toEqual([
      ['a', 'www.example.com', 1, undefined],
      ['b', 'x.example.com', 16, 'batch'],
      ['c', 'y.example.com', 65399, undefined],
    ]);
  });

  it('names the bad line', () => {
    expect(() => parseJsonl('{"ts":1,"session":"a","qname":"x","qtype":1}\nnot json')).toThrow('line 2: not JSON');
    expect(() => parseJsonl('{"ts":1,"session":"a","qname":"x","qtype":"BOGUS"}')).toThrow(/^line 1: qtype: unknown query type "BOGUS"$/);
    expect(() => parseJsonl('{"ts":1,"session":"a","qtype":1}')).toThrow(WardenError);
    expect(() => parseJsonl('{"ts":1,"session":"a","qname":"x","qtype":1,"session_type":"cron"}')).toThrow(/^line 1: session_type: /);
  });
});

describe('replayLines', () => {
  it('counts verdicts, simulates the quarantine gate and the cache, and reports labelled figures', () => {
    const lines = [
      { ts: 0, session: 'good', session_type: 'batch' as const, qname: 'www.github.com', qtype: 1, label: 'benign' as const },
      { ts: 1000, session: 'good', session_type: 'batch' as const, qname: 'www.github.com', qtype: 1, label: 'benign' as const }, // cache hit
      { ts: 2000, session: 'good', session_type: 'batch' as const, qname: 'dns.google', qtype: 1, label: 'benign' as const },
      ...[0, 1, 2, 3].map((i) => ({ ts: i * 100, session: 'bad', session_type: 'batch' as const, qname: bulk(i), qtype: 16, label: 'exfil' as const, data: true, kind: 'bulk' })),
    ];
    const r = replayLines(lines, policy());
    expect(r.queries).toBe(7);
    expect(r.sessions).toBe(2);
    expect(r.verdicts).toEqual({ 'answer/none': 2, 'nxdomain/deny_list': 1, 'nxdomain/threshold': 1, 'quarantine/threshold': 1, 'nxdomain/quarantined': 2 });
    expect(r.benign).toEqual({ queries: 3, blockedQueries: 1, uniqueNames: 2, uniqueNamesBlocked: 1, sessions: 1, sessionsWithBlock: 1, sessionsQuarantined: 0 });
    expect(r.exfil).toMatchObject({ queries: 4, blockedQueries: 2, sessions: 1, sessionsWithBlock: 1, sessionsQuarantined: 1 });
    const good = r.perSession.find((s) => s.session === 'good')!;
    expect(good).toMatchObject({ forwardedBeforeQuarantine: 1, bytesBeforeQuarantine: 'www.github.com'.length, firstBlockAt: 3, quarantineAt: undefined });
    const bad = r.perSession.find((s) => s.session === 'bad')!;
    expect(bad).toMatchObject({ firstDataBlockAt: 1, quarantineAt: 2, dataQueriesAtQuarantine: 2, quarantineRule: 'threshold', bytesBeforeQuarantine: 0 });
    expect(r.signals.label_entropy).toEqual({ fired: 2, firedWhenBlocked: 2 });
    expect(figuresByKind(r)).toEqual([{ kind: 'bulk', streams: 1, quarantined: 1, maxQueriesBeforeBlock: 0, maxBytesBeforeBlock: 0, maxQueriesBeforeQuarantine: 0, maxBytesBeforeQuarantine: 0, maxInfoAtQuarantine: 0 }]);
  });

  it('formatReport prints verdicts, signals and the labelled figures', () => {
    const r = replayLines([{ ts: 0, session: 'x', qname: bulk(9), qtype: 1, label: 'exfil', kind: 'bulk' }], policy());
    const text = formatReport(r);
    expect(text).toContain('1 queries, 1 sessions; modes: interactive enforce, batch enforce, scheduled enforce');
    expect(text).toMatch(/\n {2}nxdomain\/threshold +1\n/);
    expect(text).toMatch(/\n {2}label_entropy +1 +1\n/);
    expect(text).toContain('exfil: 1 sessions, 1 queries');
    expect(text).toContain('  sessions with any block   1 (100.000%)');
    expect(text).toMatch(/\n {2}bulk +0\/1 \| 0,0 B \| 0,0 B \| 0 B\n$/);
  });
});

describe('replayFile', () => {
  it('is what `dnswarden replay FILE` calls: reads, parses, replays under the given config', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dnswarden-replay-'));
    const file = join(dir, 'q.jsonl');
    writeFileSync(file, `${JSON.stringify({ ts: 0, session: 's', qname: 'dns.google', qtype: 1 })}\n`);
    const enforce = await replayFile(file, config);
    expect(enforce.verdicts).toEqual({ 'nxdomain/deny_list': 1 });
    const open = await replayFile(file, { policy: policySchema.parse({ deny_public_resolvers: false, mode: 'observe' }), scoring: config.scoring });
    expect(open.verdicts).toEqual({ 'answer/none': 1 });
    expect(open.modes.batch).toBe('observe');
  });

  it('applies the policy zones the config names, as the live judge does', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dnswarden-replay-'));
    const file = join(dir, 'q.jsonl');
    writeFileSync(file, ['bad.example', 'x.bad.example', 'ok.bad.example', 'www.example.com'].map((qname, ts) => JSON.stringify({ ts, session: 's', qname, qtype: 1 })).join('\n'));
    const rpz = [{ name: 'threat.rpz', file: join(import.meta.dirname, '../../fixtures/rpz/threat.rpz') }];
    const report = await replayFile(file, { policy: policySchema.parse({ rpz }), scoring: config.scoring });
    expect(report.verdicts).toEqual({ 'nxdomain/rpz': 2, 'answer/none': 2 });
  });
});
