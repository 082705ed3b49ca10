import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { hex, prng } from '../../fixtures/corpora/generate.mjs';
import { WardenError } from '../../src/errors.js';
import { policySchema, scoringSchema } from '../../src/policy/schema.js';
import { Policy } from '../../src/policy/judge.js';
import { figuresByKind, formatReport, parseJsonl, parseJsonlCounted, readLine, replayFile, replayLines, replayStream } from '../../src/replay/replay.js';

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

describe('parseJsonlCounted', () => {
  it('skips the verdict log\'s repeat lines (counts of blocks whose names were not logged) and says how many blocks they stand for', () => {
    const full = '{"event":"verdict","ts":2,"session":"b","session_type":"batch","name":"x.example.com","qtype":"A","action":"nxdomain","rule":"quarantined"}';
    const repeat = '{"event":"verdict_repeat","count":41,"session":"b","session_type":"batch","action":"nxdomain","rule":"quarantined","last_name":"y.example.com","last_qtype":"A","first_ts":3,"last_ts":9,"ts":9}';
    const { lines, repeatedBlocks } = parseJsonlCounted(`${full}\n${repeat}\n${repeat}\n`);
    expect(lines.map((l) => l.qname)).toEqual(['x.example.com']);
    expect(repeatedBlocks).toBe(82);
    expect(parseJsonl(`${full}\n${repeat}\n`)).toHaveLength(1);
    // A repeat line without a usable count is not one: it is parsed (and rejected) as a query line.
    expect(() => parseJsonl('{"event":"verdict_repeat","count":"many","ts":1,"session":"b"}')).toThrow(/^line 1: qname: /);
  });
});

describe('replayLines', () => {
  it('counts verdicts, simulates the quarantine gate and the cache, and reports labelled figures', async () => {
    const lines = [
      { ts: 0, session: 'good', session_type: 'batch' as const, qname: 'www.github.com', qtype: 1, label: 'benign' as const },
      { ts: 1000, session: 'good', session_type: 'batch' as const, qname: 'www.github.com', qtype: 1, label: 'benign' as const }, // cache hit
      { ts: 2000, session: 'good', session_type: 'batch' as const, qname: 'dns.google', qtype: 1, label: 'benign' as const },
      ...[0, 1, 2, 3].map((i) => ({ ts: i * 100, session: 'bad', session_type: 'batch' as const, qname: bulk(i), qtype: 16, label: 'exfil' as const, data: true, kind: 'bulk' })),
    ];
    const r = await replayLines(lines, policy());
    expect(r.queries).toBe(7);
    expect(r.sessions).toBe(2);
    expect(r.verdicts).toEqual({ 'answer/none': 2, 'nxdomain/deny_list': 1, 'nxdomain/threshold': 1, 'quarantine/threshold': 1, 'nxdomain/quarantined': 2 });
    expect(r.benign).toEqual({ queries: 3, blockedQueries: 1, blockedByRule: 1, blockedWhileQuarantined: 0, uniqueNames: 2, uniqueNamesBlocked: 1, sessions: 1, sessionsWithBlock: 1, sessionsQuarantined: 0 });
    expect(r.exfil).toMatchObject({ queries: 4, blockedQueries: 4, blockedByRule: 2, blockedWhileQuarantined: 2, sessions: 1, sessionsWithBlock: 1, sessionsQuarantined: 1 });
    const good = r.perSession.find((s) => s.session === 'good')!;
    expect(good).toMatchObject({ forwardedBeforeQuarantine: 1, bytesBeforeQuarantine: 'www.github.com'.length, firstBlockAt: 3, quarantineAt: undefined });
    const bad = r.perSession.find((s) => s.session === 'bad')!;
    expect(bad).toMatchObject({ firstDataBlockAt: 1, quarantineAt: 2, dataQueriesAtQuarantine: 2, quarantineRule: 'threshold', bytesBeforeQuarantine: 0 });
    expect(r.signals.label_entropy).toEqual({ fired: 2, firedWhenBlocked: 2 });
    // The blocked figures add up: every verdict that is not an answer, once, whichever way it is split.
    const nonAnswers = Object.entries(r.verdicts).filter(([k]) => !k.startsWith('answer/')).reduce((n, [, v]) => n + v, 0);
    expect(r.blocked).toEqual({ queries: 5, byRule: 3, whileQuarantined: 2 });
    expect(r.benign.blockedQueries + r.exfil.blockedQueries).toBe(nonAnswers);
    expect(r.perSession.reduce((n, s) => n + s.blocked + s.blockedWhileQuarantined, 0)).toBe(nonAnswers);
    expect(figuresByKind(r)).toEqual([{ kind: 'bulk', streams: 1, quarantined: 1, maxQueriesBeforeBlock: 0, maxBytesBeforeBlock: 0, maxQueriesBeforeQuarantine: 0, maxBytesBeforeQuarantine: 0, maxInfoAtQuarantine: 0 }]);
  });

  it('simulates enforcement in observe mode: the pipeline closes the gate as an enforcing server would; the report names the mode', async () => {
    const observe = new Policy(policySchema.parse({ mode: 'observe' }), config.scoring);
    const lines = [0, 1, 2, 3, 4].map((i) => ({ ts: i * 100, session: 'bad', session_type: 'batch' as const, qname: bulk(i), qtype: 16 }));
    const r = await replayLines(lines, observe);
    expect(r.modes.batch).toBe('observe');
    expect(r.verdicts).toEqual({ 'nxdomain/threshold': 1, 'quarantine/threshold': 1, 'nxdomain/quarantined': 3 });
    expect(r.perSession[0]).toMatchObject({ quarantineAt: 2, blockedWhileQuarantined: 3 });
  });

  it('formatReport prints the highest budget accounts of a label\'s sessions: a codebook\'s repeats show', async () => {
    const codebook = ['ab', 'cd', 'ef', 'gh'];
    const lines = [];
    for (let i = 0; i < 400; i++) lines.push({ ts: i * 10, session: 'cb', qname: `${codebook[(i * 7 + (i >> 3)) % 4]}.cbook.example`, qtype: 1, label: 'exfil' as const, kind: 'codebook' });
    const r = await replayLines(lines, policy(), { cacheTtlMs: 0 }); // nothing cached: every repeat leaves
    const repeats = Number(/highest budget accounts .*repeats (\d+) B/.exec(formatReport(r))?.[1]);
    expect(repeats).toBe(Math.round(r.perSession[0]!.maxRepeatEstimate));
    expect(repeats).toBeGreaterThan(60); // ~2 bits a repeat of 4 names
  });

  it('formatReport prints verdicts, signals and the labelled figures', async () => {
    const r = await replayLines([{ ts: 0, session: 'x', qname: bulk(9), qtype: 1, label: 'exfil', kind: 'bulk' }], policy());
    const text = formatReport(r);
    expect(text).toContain('1 queries, 1 sessions; modes: interactive enforce, batch enforce, scheduled enforce');
    expect(text).toMatch(/\n {2}nxdomain\/threshold +1\n/);
    expect(text).toMatch(/\n {2}label_entropy +1 +1\n/);
    expect(text).toContain('exfil: 1 sessions, 1 queries');
    expect(text).toContain('  sessions with any block   1 (100.000%)');
    expect(text).toContain('blocked 1 queries: 1 by a rule or list, 0 while the session was quarantined\n');
    expect(text).toContain('  queries blocked           1 (100.000%): 1 by a rule or list, 0 while quarantined\n');
    expect(text).toMatch(/\n {2}highest budget accounts {3}one domain 0 B, not established 0 B, a minute 0 B, encoded-looking 0 B, repeats 0 B\n/);
    // Queries and bytes apart: "0,0 B" read as one number.
    expect(text).toMatch(/\n {2}bulk +0\/1 \| 0 queries 0 B \| 0 queries 0 B \| 0 B\n$/);
  });
});

describe('readLine: what a streamed log line is', () => {
  it('skips what is neither a query nor a verdict, and still names a bad query line', () => {
    expect(readLine('', 1)).toBe('blank');
    expect(readLine('> dnswarden@0.1.0 start', 1)).toBeUndefined(); // npm's banner
    expect(readLine('{"level":30,"time":"t","service":"dnswarden","msg":"dnswarden ready"}', 2)).toBeUndefined();
    expect(readLine('{"level":30,"event":"reload","msg":"config reloaded"}', 3)).toBeUndefined();
    expect(readLine('{"ts":1,"session":"a","qna', 4)).toBeUndefined(); // a cut last line
    expect(readLine('[1,2]', 5)).toBeUndefined();
    expect(readLine('{"level":40,"event":"verdict","ts":2,"session":"b","name":"x.example.com","qtype":"TXT","action":"nxdomain","msg":"query nxdomain"}', 6)).toMatchObject({ session: 'b', qname: 'x.example.com', qtype: 16 });
    expect(() => readLine('{"level":40,"event":"verdict","ts":2,"session":"b","qtype":"TXT","msg":"query nxdomain"}', 7)).toThrow(/^line 7: qname: /);
    expect(() => readLine('{"ts":1,"session":"a","qtype":1}', 8)).toThrow(/^line 8: qname: /);
    // Older releases logged uncommon types as "other": not re-scorable, counted apart; TYPE<n> reads back.
    expect(readLine('{"event":"verdict","ts":2,"session":"b","name":"x.example.com","qtype":"other","action":"nxdomain","msg":"q"}', 9)).toBe('unknown-qtype');
    expect(readLine('{"event":"verdict","ts":2,"session":"b","name":"x.example.com","qtype":"TYPE65399","action":"nxdomain","msg":"q"}', 10)).toMatchObject({ qtype: 65399 });
    expect(readLine('{"event":"verdict","ts":2,"session":"b","name":"x.example.com","qtype":"SPF","action":"nxdomain","msg":"q"}', 11)).toMatchObject({ qtype: 99 });
  });
});

describe('the query log as exported (GET /v1/queries?format=jsonl)', () => {
  const row = (over: Record<string, unknown>) => JSON.stringify({ time: '2026-12-06T10:00:00.000Z', name: 'www.example.com', qtype: 1, session: 's', user: 'u', role: 'r', session_type: 'batch', result: 'answered', action: 'answer', rule: 'none', rcode: 0, score: 0.1, count: 1, last_time: '2026-12-06T10:00:00.000Z', ...over });

  it('reads a row: its time, name, rcode and count; a refused or failed row has no verdict to compare', () => {
    expect(readLine(row({ rcode: 3, count: 4, last_time: '2026-12-06T10:00:02.500Z' }), 1)).toMatchObject({ ts: Date.parse('2026-12-06T10:00:00.000Z'), last_ts: Date.parse('2026-12-06T10:00:02.500Z'), qname: 'www.example.com', qtype: 1, session_type: 'batch', rcode: 3, count: 4, action: 'answer', result: 'answered' });
    const failed = readLine(row({ result: 'failed', action: 'failed', rule: 'none', rcode: 2 }), 2);
    expect(failed).toMatchObject({ result: 'failed' });
    expect(failed).not.toHaveProperty('action');
    expect(() => readLine(row({ time: 'yesterday' }), 3)).toThrow(/^line 3: ts: /);
  });

  it('replays a row as `count` queries through the pipeline, a failed one as an upstream failure (not observed, not blocked)', async () => {
    const lines = parseJsonl([row({ count: 3, last_time: '2026-12-06T10:00:01.000Z' }), row({ name: 'api.example.com', result: 'failed', action: 'failed', rcode: 2 })].join('\n'));
    const seen: string[] = [];
    const r = await replayLines(lines, policy(), { onDecision: (l, action, rule) => seen.push(`${l.qname} ${action}/${rule}`) });
    expect(r.queries).toBe(4);
    expect(r.verdicts).toEqual({ 'answer/none': 3, 'failed/upstream': 1 });
    expect(seen).toEqual(['www.example.com answer/none', 'www.example.com answer/none', 'www.example.com answer/none', 'api.example.com failed/upstream']);
    expect(r.blocked.queries).toBe(0);
    expect(r.perSession[0]).toMatchObject({ forwardedBeforeQuarantine: 1 }); // the repeats within 60 s were cache hits; the failure left nothing
    expect(r.changes).toMatchObject({ compared: 3, newlyBlocked: 0, newlyAllowed: 0 });
  });
});

describe('replayFile', () => {
  it('counts and reports the lines it skipped; a report adds up across the sweep too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dnswarden-replay-'));
    const file = join(dir, 'log.jsonl');
    writeFileSync(file, ['> dnswarden@0.1.0 start', '', '{"level":30,"msg":"dnswarden ready"}',
      ...[0, 1, 2, 3].map((i) => JSON.stringify({ ts: i, session: 'bad', session_type: 'batch', qname: bulk(i), qtype: 16 })), '{"ts":9,"sess'].join('\n'));
    const r = await replayFile(file, config);
    expect(r).toMatchObject({ queries: 4, skippedLines: 3, firstSkippedLine: 1, blocked: { queries: 4, byRule: 2, whileQuarantined: 2 } });
    expect(formatReport(r)).toContain('skipped 3 lines that are neither queries nor verdicts (the first: line 1)\n');
    expect(r.sweep.find((row) => row.blockAt === 0.5)?.blockedQueries).toBe(4);
  });


  it('reports progress while it reads (the CLI shows it on a terminal)', async () => {
    const text = Array.from({ length: 3000 }, (_, i) => JSON.stringify({ ts: i, session: 's', qname: `www.site${i % 50}.com`, qtype: 1 })).join('\n');
    const seen: { lines: number; queries: number }[] = [];
    const r = await replayStream(Readable.from([text]), config, { progressEveryMs: 0, onProgress: (p) => seen.push(p) });
    expect(r.queries).toBe(3000);
    expect(seen.map((p) => p.lines)).toEqual([1024, 2048]);
    expect(seen.map((p) => p.queries)).toEqual([1023, 2047]); // counted before the 1,024th line is read
  });

  it('is what `dnswarden replay FILE` calls: reads, parses, replays under the given config', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dnswarden-replay-'));
    const file = join(dir, 'q.jsonl');
    writeFileSync(file, `${JSON.stringify({ ts: 0, session: 's', qname: 'dns.google', qtype: 1 })}\n`);
    const enforce = await replayFile(file, config);
    expect(enforce.verdicts).toEqual({ 'nxdomain/deny_list': 1 });
    const open = await replayFile(file, { policy: policySchema.parse({ deny_public_resolvers: false, mode: 'observe' }), scoring: config.scoring });
    expect(open.verdicts).toEqual({ 'answer/none': 1 });
    expect(open.modes.batch).toBe('observe');
    expect(open.repeatedBlocksNotReplayed).toBe(0);
    writeFileSync(file, `${JSON.stringify({ ts: 0, session: 's', qname: 'dns.google', qtype: 1 })}\n${JSON.stringify({ event: 'verdict_repeat', count: 7, session: 's', ts: 1 })}\n`);
    const withRepeats = await replayFile(file, config);
    expect(withRepeats.queries).toBe(1);
    expect(withRepeats.repeatedBlocksNotReplayed).toBe(7);
    expect(formatReport(withRepeats)).toContain('7 more blocks were logged only as counts');
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
