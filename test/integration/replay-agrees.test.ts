// Issue 13: replay and the server cannot disagree. One sequence of queries — a benign session (fixture names, each
// asked twice, NXDOMAIN and NODATA among them, names outside the upstream's zones) and two exfiltration streams from
// fixtures/corpora/generate.mjs (a bulk tunnel that is blocked and quarantined, a slow one that only the accumulation
// budget stops) — goes through a real server with a real NSD upstream; its query log, exported as JSONL, is replayed;
// every query's decision (action and rule, in order, per session) must be the one the server made, and what the
// client was answered must say the same.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exfilStreams, type CorpusLine } from '../../fixtures/corpora/generate.mjs';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { query, type DnsReply } from '../helpers/dns-client.js';
import { startWarden, type Warden } from '../helpers/warden.js';
import { parseConfig } from '../../src/ops/config.js';
import { replayFile } from '../../src/replay/replay.js';

const QTYPE_NAMES: Readonly<Record<number, string>> = { 1: 'A', 5: 'CNAME', 10: 'NULL', 15: 'MX', 16: 'TXT', 28: 'AAAA' };

const streams = exfilStreams();
const streamOf = (kind: string): CorpusLine[] => {
  const lines = streams.filter((l) => l.kind === kind);
  expect(lines.length, kind).toBeGreaterThan(0);
  return lines;
};
const BULK = streamOf('bulk-hex-l63-d3'); // blocked at once, quarantined by the third block, then gated
const SLOW = streamOf('slow-base32-l30-old'); // answered for a while, then quarantined by an accumulation budget

const SESSIONS = [
  { id: 'benign', addresses: ['127.0.0.21/32'], type: 'interactive', user: 'dev', role: 'developer' },
  { id: 'bulk', addresses: ['127.0.0.22/32'], type: BULK[0]!.session_type, user: 'etl', role: 'loader' },
  { id: 'slow', addresses: ['127.0.0.23/32'], type: SLOW[0]!.session_type, user: 'cron', role: 'scheduler' },
] as const;
const BIND: Readonly<Record<string, string>> = { benign: '127.0.0.21', bulk: '127.0.0.22', slow: '127.0.0.23' };

// Benign names: in the fixture zones (answers, NXDOMAIN, NODATA, a CNAME chain) each asked twice (the second a cache
// hit on both sides), and names outside the upstream's zones once each (their REFUSED is not cached).
const BENIGN: { name: string; type: string }[] = [
  ...[FIXTURE.a.name, FIXTURE.multiA.name, FIXTURE.txt.name, FIXTURE.nxdomain.name, FIXTURE.nodata.name, FIXTURE.cnameChain.name].flatMap((name) => [{ name, type: 'A' }, { name, type: 'A' }]),
  { name: FIXTURE.mx.name, type: 'MX' },
  ...['www.github.com', 'registry.npmjs.org', 'pypi.org', 'api.openai.com'].map((name) => ({ name, type: 'A' })),
];

interface Sent { readonly session: string; readonly name: string; readonly reply: DnsReply }

let upstream: Upstream;
let warden: Warden;
let dir: string;
const sent: Sent[] = [];

/** The three sessions' queries interleaved: one benign query after every few exfiltration queries. */
function schedule(): { session: string; name: string; type: string }[] {
  const out: { session: string; name: string; type: string }[] = [];
  const bulk = BULK.map((l) => ({ session: 'bulk', name: l.qname, type: QTYPE_NAMES[l.qtype]! }));
  const slow = SLOW.map((l) => ({ session: 'slow', name: l.qname, type: QTYPE_NAMES[l.qtype]! }));
  const benign = BENIGN.map((q) => ({ session: 'benign', ...q }));
  for (let i = 0; bulk.length + slow.length + benign.length > 0; i++) {
    if (slow.length > 0) out.push(slow.shift()!);
    if (i % 4 === 0 && bulk.length > 0) out.push(bulk.shift()!);
    if (i % 6 === 0 && benign.length > 0) out.push(benign.shift()!);
    if (slow.length === 0) out.push(...bulk.splice(0), ...benign.splice(0));
  }
  return out;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dnswarden-replay-agrees-'));
  upstream = await startUpstream();
  warden = await startWarden({ sessions: { static: SESSIONS.map((s) => ({ ...s, addresses: [...s.addresses] })) } }, { upstream });
  for (const q of schedule()) {
    const reply = await query({ server: warden.dns, bind: BIND[q.session]!, name: q.name, type: q.type as 'A', timeoutMs: 5000 });
    sent.push({ session: q.session, name: q.name, reply });
  }
}, 120_000);

afterAll(async () => {
  await warden?.close();
  await upstream?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

interface Row { time: string; name: string; qtype: number; session: string; result: string; action: string; rule: string; rcode: number; count: number }

describe('replay of the server\'s query log', () => {
  it('decides every query as the server did: the same action and rule, in the same order, per session', async () => {
    const exported = await warden.admin('/v1/queries?format=jsonl&limit=10000');
    expect(exported.status, exported.text).toBe(200);
    const rows = exported.text.trim().split('\n').reverse(); // the API lists newest first; replay reads in time order
    const file = join(dir, 'query-log.jsonl');
    writeFileSync(file, `${rows.join('\n')}\n`);
    const logged = rows.map((r) => JSON.parse(r) as Row);
    expect(logged.reduce((n, r) => n + r.count, 0)).toBe(sent.length); // every query is in the log

    const replayed: string[] = [];
    const config = parseConfig({});
    const report = await replayFile(file, config, { onDecision: (l, action, rule) => replayed.push(`${l.session} ${l.qname} ${action}/${rule}`) });
    const server = logged.flatMap((r) => Array.from({ length: r.count }, () => `${r.session} ${r.name} ${r.action}/${r.rule}`));
    expect(replayed).toEqual(server);
    expect(report.queries).toBe(sent.length);
    expect(report.changes).toMatchObject({ compared: sent.length, newlyBlocked: 0, newlyAllowed: 0 });

    // The sequence is worth comparing: it holds answers, threshold blocks, both kinds of quarantine and the closed gate.
    expect(Object.keys(report.verdicts).sort()).toEqual(['answer/none', 'nxdomain/quarantined', 'nxdomain/threshold', 'quarantine/accumulation', 'quarantine/threshold']);

    // And what the client was answered says the same: per session, the first block and the quarantining query.
    for (const session of ['bulk', 'slow', 'benign']) {
      const replies = sent.filter((s) => s.session === session);
      const r = report.perSession.find((p) => p.session === session)!;
      const firstBlocked = replies.findIndex((s) => s.reply.ede !== undefined && s.reply.ede.code === 15);
      // The quarantining query's text gives the reason after the id; the closed gate's is the id alone.
      const quarantining = replies.findIndex((s) => /^session quarantined \([^)]+\): /.test(s.reply.ede?.text ?? ''));
      expect(r.firstBlockAt === undefined ? -1 : r.firstBlockAt - 1, session).toBe(firstBlocked);
      expect(r.quarantineAt === undefined ? -1 : r.quarantineAt - 1, session).toBe(quarantining);
    }
    expect(report.perSession.find((p) => p.session === 'benign')).toMatchObject({ blocked: 0, quarantineAt: undefined });
    expect(report.perSession.find((p) => p.session === 'bulk')).toMatchObject({ quarantineRule: 'threshold' });
    expect(report.perSession.find((p) => p.session === 'slow')).toMatchObject({ quarantineRule: 'accumulation' });
  }, 60_000);
});
