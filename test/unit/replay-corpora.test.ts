// The calibration targets of issue 3, asserted on the corpora (fixtures/corpora/README.md has the figures).
// Print the figures with:  DNSWARDEN_FIGURES=1 npx vitest run test/unit/replay-corpora.test.ts
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { agentSessions, exfilStreams, popularitySessions, readCorpus, toJsonl, type CorpusLine } from '../../fixtures/corpora/generate.mjs';
import { policySchema, scoringSchema } from '../../src/policy/schema.js';
import { Policy, type SessionType } from '../../src/policy/judge.js';
import { figuresByKind, formatReport, replayLines, type ReplayReport, type SessionResult } from '../../src/replay/replay.js';

const here = new URL('../../fixtures/corpora/', import.meta.url);
const policy = () => new Policy(policySchema.parse({}), scoringSchema.parse({}));
const show = process.env['DNSWARDEN_FIGURES'] === '1';
const say = (title: string, text: string) => {
  if (show) console.log(`\n=== ${title}\n${text}`);
};

const exfil = exfilStreams();
/** Each stream replayed on its own (its own cache), so streams sharing a secret prefix cannot shield each other. */
async function replayEach(lines: readonly CorpusLine[]): Promise<SessionResult[]> {
  const by = new Map<string, CorpusLine[]>();
  for (const l of lines) by.get(l.session)?.push(l) ?? by.set(l.session, [l]);
  return Promise.all([...by.values()].map(async (ls) => (await replayLines(ls, policy())).perSession[0]!));
}
const results = await replayEach(exfil);

describe('generated corpora', () => {
  it('the committed JSONL files are what the generator makes (node fixtures/corpora/generate.mjs)', () => {
    const web = readCorpus('benign-domains.txt').slice(0, 5000);
    expect(readFileSync(new URL('exfil.jsonl', here), 'utf8')).toBe(toJsonl(exfil));
    expect(readFileSync(new URL('agents.jsonl', here), 'utf8')).toBe(toJsonl(agentSessions(60, 11, web)));
  });

  it('cover every stream kind the issue names', () => {
    const kinds = new Set(exfil.map((l) => l.kind));
    for (const k of ['bulk-hex-l63-d1', 'bulk-base32-l30-d3', 'bulk-base64url-l12-d10', 'bulk-base64-l63-d10', 'slow-dictionary-l30-old', 'slow-spread10-base32-young', 'iodine-base32', 'iodine-base64u', 'dnscat2', 'dnscat2-nodomain', 'dns2tcp']) {
      expect(kinds).toContain(k);
    }
    expect(new Set(exfil.map((l) => l.qtype))).toEqual(new Set([1, 5, 10, 15, 16]));
    expect(exfil.some((l) => l.qname.includes('+') && l.qname.includes('/'))).toBe(true);
    expect(exfil.some((l) => l.qname.startsWith('dnscat.'))).toBe(true);
  });
});

describe('bulk tunnels: first data query blocked, quarantined by the 3rd, ≤ 512 bytes leave', () => {
  const bulk = results.filter((r) => /^(bulk|iodine|dnscat2|dns2tcp)/.test(r.kind ?? ''));
  it.each(bulk.map((r) => [r.kind, r.type, r] as const))('%s (%s)', (_kind, _type, r) => {
    expect(r.firstDataBlockAt).toBe(1);
    expect(r.quarantineAt).toBeDefined();
    expect(r.dataQueriesAtQuarantine).toBeLessThanOrEqual(3);
    expect(r.bytesBeforeQuarantine).toBeLessThanOrEqual(512);
  });
  it('covers 46 streams', () => expect(bulk).toHaveLength(46));
});

/** Payload bytes forwarded before the quarantine by a `slow-<codec>-l<len>-…` stream (as generate.mjs sizes its chunks). */
function slowPayloadBeforeQuarantine(r: SessionResult): number {
  if (r.kind === 'slow-spread10-base32-young') return r.forwardedBeforeQuarantine * 10;
  const [, codec, len] = /^slow-(hex|base32|base64url|base64)-l(\d+)-/.exec(r.kind ?? '') ?? [];
  const perQuery = Math.min(16, Math.max(4, Math.floor(Number(len) / (codec === 'hex' ? 2 : 1.6))));
  return r.forwardedBeforeQuarantine * perQuery;
}

describe('slow exfiltration: quarantined before 1 KB (one domain) / 2 KB (young domains) of deflated information', () => {
  const slow = results.filter((r) => r.kind?.startsWith('slow-'));
  it.each(slow.map((r) => [r.kind, r.type, r] as const))('%s (%s)', (kind, _type, r) => {
    expect(r.quarantineRule).toBe('accumulation');
    // deflate of the unique subdomains sent, measured at the moment of quarantine
    if (/encoded-looking labels/.test(r.quarantineReason ?? '')) {
      // encoded codecs (hex, base32, base64): the encoded-label budget (432/448 estimated bytes, issue 14) caught it,
      // well before the other budgets: deflate of everything the session sent stays near the 512 B target
      expect(kind).not.toMatch(/dictionary/);
      expect(slowPayloadBeforeQuarantine(r)).toBeLessThanOrEqual(512);
      expect(r.sessionInfoBytes).toBeLessThan(700); // deflate of the names sent, sequence counters included
    } else if (kind?.startsWith('slow-spread10')) {
      expect(r.maxDomainInfoBytes).toBeLessThan(1024);
      expect(r.youngInfoBytes).toBeLessThan(2048);
      expect(r.youngInfoBytes).toBeGreaterThan(1000); // it was the sum over young domains (the session-wide budget) that caught it
    } else {
      expect(r.maxDomainInfoBytes).toBeLessThan(1024);
      expect(r.maxDomainInfoBytes).toBeGreaterThan(500);
    }
  });
  it('covers 32 streams', () => expect(slow).toHaveLength(32));
});

/** Payload bytes forwarded before the quarantine by an `adaptive-<codec>-l<len>-d<n>` stream (one label of data a query). */
function payloadBeforeQuarantine(r: SessionResult): number {
  const [, codec, len] = /^adaptive-(hex|base32|base64url)-l(\d+)-/.exec(r.kind ?? '') ?? [];
  const charsPerByte = codec === 'hex' ? 2 : codec === 'base32' ? 1.6 : 4 / 3;
  return r.forwardedBeforeQuarantine * Math.floor(Number(len) / charsPerByte);
}

describe('adaptive attacks (issue 14): one short label a query, one domain or ten of unknown age (or ten old ones); fast short-label MX tunnel', () => {
  const adaptive = results.filter((r) => r.kind?.startsWith('adaptive-'));
  it.each(adaptive.map((r) => [r.kind, r.type, r] as const))('%s (%s)', (kind, _type, r) => {
    if (kind?.endsWith('-old')) {
      // established domains: the session-wide budget does not apply, the encoded-label budget does (any domain
      // but a platform apex): quarantined, not just rate-capped as before
      expect(r.firstDataBlockAt).toBeDefined();
      expect(r.forwardedBeforeBlock).toBeLessThan(60);
      expect(r.quarantineRule).toBe('accumulation');
      expect(r.quarantineReason).toMatch(/encoded-looking labels/);
      expect(payloadBeforeQuarantine(r)).toBeLessThanOrEqual(512);
      return;
    }
    expect(r.quarantineAt).toBeDefined();
    if (kind?.startsWith('adaptive-mx')) {
      expect(r.firstDataBlockAt).toBe(1);
      expect(r.bytesBeforeQuarantine).toBeLessThanOrEqual(512);
      return;
    }
    expect(r.quarantineRule).toBe('accumulation');
    // the secret bytes that left: every forwarded query carried floor(label length / chars per byte) of them
    // (before issue 14 the ten-domain spread sent all 4 KiB)
    // (the budgets in estimated bytes: batch/scheduled 896, interactive 1024 session-wide; ~0.94 of them is payload)
    expect(payloadBeforeQuarantine(r)).toBeLessThanOrEqual(r.type === 'interactive' ? 960 : 850);
    // issue 14's target: the encoded-label budget (432 batch/scheduled, 448 interactive) holds it to ≤ 512 B
    expect(payloadBeforeQuarantine(r)).toBeLessThanOrEqual(512);
    expect(r.sessionInfoBytes).toBeLessThan(1100); // deflate of every unique subdomain forwarded to any domain
    if (kind?.endsWith('-d10')) expect(r.maxDomainInfoBytes).toBeLessThan(256); // the session-wide sum caught it
  });
  it('covers 16 streams', () => expect(adaptive).toHaveLength(16));
});

describe('adaptive shapes (issue 14): 6–16-char labels of hex/base32/36/58/62/64url and dictionary words, varying lengths, sequence counters, one domain to fifty, old domains, paced under benign cover', () => {
  const shapes = results.filter((r) => r.kind?.startsWith('shape-'));
  it.each(shapes.map((r) => [r.kind, r.type, r] as const))('%s (%s)', (kind, _type, r) => {
    expect(r.quarantineRule).toBe('accumulation');
    expect(r.payloadBeforeQuarantine).toBeLessThanOrEqual(512);
    expect(r.payloadBeforeQuarantine).toBeGreaterThan(200); // the stream did run: it is the budget that stopped it
    if (!kind?.startsWith('shape-words')) expect(r.quarantineReason).toMatch(/encoded-looking labels/);
    // dictionary words over established domains, paced under the bandwidth cap, look like names and are old:
    // only the session total (every domain but a platform apex) bounds them
    if (kind === 'shape-words-b2to3-d10-old-paced') expect(r.quarantineReason).toMatch(/to any domain \(session total\)$/);
  });
  it('covers 16 streams', () => expect(shapes).toHaveLength(16));
});

describe('benign', () => {
  it('popularity corpus: ≤ 0.01% of the 200,000 names blocked by the per-query rule (strictest session type)', () => {
    const names = readCorpus('benign-fqdn.txt');
    const p = policy();
    const blocked: string[] = [];
    let deny = 0;
    for (const name of names) {
      // a fresh state per name: only the per-query rule can block
      const v = p.judge({ name, qtype: 1, session: { id: 'p', user: 'u', role: 'r', type: 'batch' }, state: p.newSessionState(), ageDays: undefined, atMs: 0 });
      if (v.rule === 'threshold') blocked.push(`${name} ${v.reason}`);
      if (v.rule === 'deny_list') deny++;
    }
    say('popularity corpus, per-query rule (batch)', `${blocked.length} of ${names.length} blocked (${((100 * blocked.length) / names.length).toFixed(4)}%), ${deny} deny-listed DoH names\n${blocked.join('\n')}`);
    expect(names).toHaveLength(200_000);
    expect(blocked.length).toBeLessThanOrEqual(20);
    expect(deny).toBeGreaterThan(10); // the corpus holds public DoH endpoints; they are denied by the list, not by the score
  }, 60_000);

  it('realistic agent sessions: ≤ 0.1% of 2,000 sessions see any block, none quarantined', async () => {
    const web = readCorpus('benign-domains.txt').slice(0, 5000);
    const r = await replayLines(agentSessions(2000, 11, web), policy());
    const maxScore = Math.max(...r.perSession.map((s) => s.maxScore));
    const maxVolume = Math.max(...r.perSession.map((s) => s.maxVolumeEstimate));
    say('agent sessions', `${formatReport(r)}\nmax score ${maxScore.toFixed(2)}, max estimated volume to one domain ${Math.round(maxVolume)} B`);
    expect(r.benign.sessions).toBe(2000);
    expect(r.benign.sessionsWithBlock).toBeLessThanOrEqual(2);
    expect(r.benign.sessionsQuarantined).toBe(0);
    // margins: far below the strictest block score (0.7) and volume budget (768)
    expect(maxScore).toBeLessThan(0.35);
    expect(maxVolume).toBeLessThan(384);
    // and below the strictest session-wide budget (896) for domains of unknown age (the corpus gives none)
    const maxSession = Math.max(...r.perSession.map((s) => s.maxSessionVolumeEstimate));
    say('agent sessions, session-wide', `max estimated volume to domains of unknown or young age ${Math.round(maxSession)} B`);
    expect(maxSession).toBeLessThan(256);
    // (every domain of these sessions is of unknown age, so this is also their session total: far below 1280)
    // and far below the encoded-label budget (432 batch/scheduled): agents' ids sit below platform apexes or are UUIDs
    const maxEncoded = Math.max(...r.perSession.map((s) => s.maxEncodedEstimate));
    say('agent sessions, encoded-looking labels', `max estimated bytes of encoded-looking labels ${Math.round(maxEncoded)} B`);
    expect(maxEncoded).toBeLessThan(108);
    // and the repeat budget (432/448): repeats of known names to domains of unknown age, as a 60 s cache lets them leave
    const maxRepeat = Math.max(...r.perSession.map((s) => s.maxRepeatEstimate));
    say('agent sessions, repeats', `max estimated bytes in which known names were asked again ${maxRepeat.toFixed(1)} B`);
    expect(maxRepeat).toBeGreaterThan(0); // the account does see their repeats
    expect(maxRepeat).toBeLessThan(16);
  }, 60_000);

  it('realistic agent sessions with nothing cached (every repeat leaves, as if every answer had TTL 0): the repeat budget keeps its margin', async () => {
    const web = readCorpus('benign-domains.txt').slice(0, 5000);
    const r = await replayLines(agentSessions(2000, 11, web), policy(), { cacheTtlMs: 0 });
    const maxRepeat = Math.max(...r.perSession.map((s) => s.maxRepeatEstimate));
    say('agent sessions, nothing cached, repeats', `max estimated bytes in which known names were asked again ${maxRepeat.toFixed(1)} B`);
    expect(r.benign.sessionsQuarantined).toBe(0);
    expect(maxRepeat).toBeLessThan(48); // a tenth of the strictest repeat budget (432)
  }, 60_000);

  it('popularity corpus replayed as sessions (40 names of each visited domain): figures for the README', async () => {
    const names = readCorpus('benign-fqdn.txt');
    const r: ReplayReport = await replayLines(popularitySessions(names, 2000, 5), policy());
    say('popularity sessions', formatReport(r));
    expect(r.benign.sessions).toBe(2000);
    expect(r.benign.sessionsWithBlock).toBeLessThanOrEqual(20); // ≤ 1%: many blocks here are deny-listed DoH names
    expect(r.benign.sessionsQuarantined).toBeLessThanOrEqual(2);
    // the encoded-label budget (432/448) keeps a margin over every session it did not quarantine
    const encoded = r.perSession.filter((s) => s.quarantineAt === undefined).map((s) => s.maxEncodedEstimate);
    say('popularity sessions, encoded-looking labels', `max estimated bytes of encoded-looking labels ${Math.round(Math.max(...encoded))} B`);
    expect(Math.max(...encoded)).toBeLessThan(400);
    const repeats = Math.max(...r.perSession.map((s) => s.maxRepeatEstimate));
    say('popularity sessions, repeats', `max estimated bytes in which known names were asked again ${repeats.toFixed(1)} B`);
    expect(repeats).toBeLessThan(64);
  }, 60_000);
});

describe('figures', () => {
  it('per exfiltration kind', () => {
    const byType = (t: SessionType) => results.filter((r) => r.type === t).length;
    say('exfiltration per kind (each stream replayed alone)', figuresByKind({ perSession: results } as unknown as ReplayReport)
      .map((k) => `${k.kind.padEnd(30)} ${k.quarantined}/${k.streams} | fwd before block ${k.maxQueriesBeforeBlock} q, ${k.maxBytesBeforeBlock} B | before quarantine ${k.maxQueriesBeforeQuarantine} q, ${k.maxBytesBeforeQuarantine} B | deflate at quarantine ${k.maxInfoAtQuarantine} B`)
      .join('\n'));
    say('adaptive shapes (issue 14): payload bytes forwarded before quarantine (or in all)', results.filter((r) => r.kind?.startsWith('shape-'))
      .map((r) => `${(r.kind ?? '').padEnd(40)} ${r.type.padEnd(11)} ${r.quarantineAt === undefined ? `not quarantined, ${r.payloadBeforeQuarantine} B in all (${r.forwardedBeforeQuarantine} q)` : `${r.payloadBeforeQuarantine} B (${r.quarantineReason})`}`)
      .join('\n'));
    say('adaptive streams (issue 14): payload bytes forwarded before quarantine or first block', results.filter((r) => /^adaptive-(hex|base32|base64url)-l\d+-d\d+/.test(r.kind ?? ''))
      .map((r) => `${(r.kind ?? '').padEnd(30)} ${r.type.padEnd(11)} ${r.quarantineAt === undefined ? `not quarantined, ${Math.round(payloadBeforeQuarantine({ ...r, forwardedBeforeQuarantine: r.forwardedBeforeBlock }))} B before the first block (${r.forwardedBeforeQuarantine} q forwarded in all)` : `${payloadBeforeQuarantine(r)} B before quarantine (${r.quarantineRule}), deflate of all sent ${r.sessionInfoBytes} B`}`)
      .join('\n'));
    expect(byType('interactive') + byType('batch') + byType('scheduled')).toBe(110);
  });
});
