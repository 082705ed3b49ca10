import { describe, expect, it } from 'vitest';
import { base32, base64url, hex, prng } from '../../fixtures/corpora/generate.mjs';
import { policySchema, scoringSchema, type PolicyConfig } from '../../src/policy/schema.js';
import { CALLBACK_SERVICES, inZones, ipv4Number, Policy, PUBLIC_RESOLVERS, type JudgeInput, type SessionInfo, type SessionType, type Verdict } from '../../src/policy/judge.js';
import type { NameFacts, SessionState } from '../../scoring/index.js';
import { DEFAULT_PLATFORMS } from '../../scoring/index.js';

const session = (type: SessionType = 'batch'): SessionInfo => ({ id: 's1', user: 'alice', role: 'agent', type });
/**
 * judge() is pure and account() the window's one writer; this runs them as the pipeline does: every judged query
 * is accounted at once (its block noted) as one that did not leave, and observe() below accounts one that did.
 */
class Judged extends Policy {
  readonly ages = new Map<string, number | undefined>();
  override judge(input: JudgeInput): Verdict {
    const v = super.judge(input);
    this.ages.set(input.name, input.ageDays);
    this.account(input.state, { kind: 'query', name: input.name, qtype: input.qtype, atMs: input.atMs, ageDays: input.ageDays, verdict: v, sent: false });
    return v;
  }
}
const make = (policy: unknown = {}, scoring: unknown = {}) => new Judged(policySchema.parse(policy), scoringSchema.parse(scoring));
/** A query that was forwarded (and answered with `rcode`) unless blocked: what the pipeline accounts for it. */
function observe(p: Policy, state: SessionState, e: { name: string; qtype: number; atMs: number; forwarded: boolean; rcode: number; blocked: boolean; facts?: NameFacts | undefined }): void {
  if (!e.forwarded || e.blocked) return;
  const verdict: Verdict | undefined = e.facts === undefined ? undefined : { action: 'answer', rule: 'none', enforced: true, mode: 'enforce', reason: '', facts: e.facts };
  p.account(state, { kind: 'query', name: e.name, qtype: e.qtype, atMs: e.atMs, ageDays: p instanceof Judged ? p.ages.get(e.name) : undefined, verdict, sent: true });
  p.account(state, { kind: 'answer', atMs: e.atMs, rcode: e.rcode });
}
/** The encoded-label and session-total budgets off (batch), to see one of the other budgets on its own: they fire first on hex labels. */
const NO_ENCODED = { session_types: { batch: { encoded_volume_budget_bytes: 1e9, total_volume_budget_bytes: 1e9 } } };
const bulkName = (seed: number) => {
  const h = hex(prng(seed).bytes(100));
  return `${h.slice(0, 63)}.${h.slice(63, 126)}.${h.slice(126, 189)}.${h.slice(189)}.xfl-cdn.net`;
};

describe('config schema', () => {
  it('defaults every field from an empty object, with tighter batch/scheduled budgets', () => {
    const p = policySchema.parse({});
    expect(p.mode).toBe('enforce');
    expect(p.session_types.interactive).toEqual({ mode: 'inherit', block_at: 0.75, quarantine_after_blocks: 3, block_window_ms: 600_000, volume_budget_bytes: 960, young_volume_budget_bytes: 1920, session_volume_budget_bytes: 1024, bandwidth_bytes_per_min: 768, encoded_volume_budget_bytes: 448, total_volume_budget_bytes: 2048, repeat_volume_budget_bytes: 448, rate_limit: { qps: 0, burst: 0 } });
    expect(p.session_types.batch).toEqual({ mode: 'inherit', block_at: 0.7, quarantine_after_blocks: 2, block_window_ms: 600_000, volume_budget_bytes: 768, young_volume_budget_bytes: 1536, session_volume_budget_bytes: 896, bandwidth_bytes_per_min: 640, encoded_volume_budget_bytes: 432, total_volume_budget_bytes: 1280, repeat_volume_budget_bytes: 432, rate_limit: { qps: 0, burst: 0 } });
    expect(p.session_types.scheduled).toEqual(p.session_types.batch);
    expect(p).toMatchObject({ allow: [], deny: [], deny_public_resolvers: true, deny_callback_services: true, callback_services: [], rebinding: { enabled: true, allow: [], block_cgnat: true } });
    const s = scoringSchema.parse({});
    expect(s.weights).toEqual({ label_entropy: 0.45, char_class: 0.3, name_length: 0.45, domain_age: 0.1, qtype: 0.1, fanout: 0.15, info_volume: 0.15, nx_ratio: 0.1 });
    expect(s).toMatchObject({ young_domain_days: 30, unknown_age_value: 0.3, platform_defaults: true, max_domains_per_session: 256 });
  });

  it('applies inner defaults when only part of a nested object is given (prefault)', () => {
    const p = policySchema.parse({ session_types: { batch: { block_at: 0.9 } } });
    expect(p.session_types.batch.block_at).toBe(0.9);
    expect(p.session_types.batch.quarantine_after_blocks).toBe(2);
    expect(p.session_types.interactive.block_at).toBe(0.75);
    expect(scoringSchema.parse({ weights: { qtype: 0 } }).weights.label_entropy).toBe(0.45);
  });

  it('rejects unknown keys and bad values, naming the field', () => {
    const bad = (x: unknown) => policySchema.safeParse(x).error?.issues[0];
    expect(bad({ modes: 'observe' })?.code).toBe('unrecognized_keys');
    expect(bad({ session_types: { batch: { block_at: -1 } } })?.path).toEqual(['session_types', 'batch', 'block_at']);
    expect(bad({ allow: ['bad name!'] })?.path).toEqual(['allow', 0]);
    expect(scoringSchema.safeParse({ weights: { entropy: 1 } }).success).toBe(false);
  });

  it('normalises zone names', () => {
    expect(policySchema.parse({ allow: ['Corp.Example.'] }).allow).toEqual(['corp.example']);
  });
});

describe('lists', () => {
  it('inZones matches the zone and names below it, nothing else', () => {
    const zones = new Set(['corp.example']);
    expect(inZones('corp.example', zones)).toBe(true);
    expect(inZones('a.b.corp.example', zones)).toBe(true);
    expect(inZones('notcorp.example', zones)).toBe(false);
    expect(inZones('example', zones)).toBe(false);
  });

  it('allow-listed zones are never scored, even when they look like a tunnel', () => {
    const p = make({ allow: ['xfl-cdn.net'] });
    const v = p.judge({ name: bulkName(1), qtype: 16, session: session(), state: p.newSessionState(), ageDays: 1, atMs: 0 });
    expect(v).toEqual({ action: 'answer', rule: 'allow_list', enforced: true, mode: 'enforce', reason: 'allow list' });
  });

  it('denies public DoH/DoT resolvers by default, and configured names', () => {
    const p = make({ deny: ['Bad.Example'] });
    for (const name of ['dns.google', 'cloudflare-dns.com', 'mozilla.cloudflare-dns.com', 'one.one.one.one', 'dns.quad9.net', 'doh.opendns.com', 'x.bad.example']) {
      const v = p.judge({ name, qtype: 1, session: session(), state: p.newSessionState(), ageDays: undefined, atMs: 0 });
      expect(v, name).toMatchObject({ action: 'nxdomain', rule: 'deny_list', enforced: true });
    }
    expect(PUBLIC_RESOLVERS).toContain('dns.google');
    const off = make({ deny_public_resolvers: false });
    expect(off.judge({ name: 'dns.google', qtype: 1, session: session(), state: off.newSessionState(), ageDays: undefined, atMs: 0 }).action).toBe('answer');
  });

  it('denies known callback services (OAST, Burp Collaborator, dnslog, canary tokens, NS-delegating dynamic DNS) by default; extendable, can be lifted, allow wins', () => {
    const j = (p: Policy, name: string) => p.judge({ name, qtype: 1, session: session(), state: p.newSessionState(), ageDays: undefined, atMs: 0 });
    const p = make({ callback_services: ['Callbacks.Example.'] });
    for (const name of ['c58bduhe008dovpvhvugcfemp9yyyyyyn.oast.fun', 'x.oast.pro', 'oast.me', 'abc.interact.sh', 'q.burpcollaborator.net', 'z9.oastify.com', 'a.b.dnslog.cn', 'k.ceye.io', 'tok.canarytokens.com', 'ns.me.mooo.com', 'a.callbacks.example']) {
      expect(j(p, name), name).toMatchObject({ action: 'nxdomain', rule: 'deny_list', reason: 'known callback service (policy.callback_services)' });
    }
    expect(j(p, 'notoast.fun').action).toBe('answer');
    expect(j(make({ deny_callback_services: false }), 'x.oast.pro').action).toBe('answer');
    expect(j(make({ deny_callback_services: false, callback_services: ['callbacks.example'] }), 'a.callbacks.example').action).toBe('answer');
    expect(j(make({ allow: ['oast.pro'] }), 'x.oast.pro').rule).toBe('allow_list');
    // no callback service is, or is below, a platform apex (whose lexical exemption assumes tenants run no nameserver)
    for (const c of CALLBACK_SERVICES) expect(inZones(c, new Set(DEFAULT_PLATFORMS)), c).toBe(false);
  });

  it('learned deny blocks every name under a confirmed domain, and can be replaced', () => {
    const p = make();
    const j = (name: string) => p.judge({ name, qtype: 1, session: session('interactive'), state: p.newSessionState(), ageDays: undefined, atMs: 0 });
    expect(j('www.evil.example').action).toBe('answer');
    p.setLearnedDeny(['Evil.Example.']);
    expect(j('www.evil.example')).toMatchObject({ action: 'nxdomain', rule: 'learned_deny' });
    expect(j('evil.example').rule).toBe('learned_deny');
    expect(j('notevil.example').action).toBe('answer');
    p.setLearnedDeny([]);
    expect(j('www.evil.example').action).toBe('answer');
  });
});

describe('threshold and quarantine', () => {
  it('blocks a bulk tunnel query and quarantines on the Nth block in the window (batch: 2nd, interactive: 3rd)', () => {
    const p = make();
    for (const [type, n] of [['batch', 2], ['interactive', 3]] as const) {
      const state = p.newSessionState();
      const actions: string[] = [];
      for (let i = 0; i < n; i++) {
        const v = p.judge({ name: bulkName(10 + i), qtype: 16, session: session(type), state, ageDays: 400, atMs: i * 100 });
        actions.push(`${v.action}/${v.rule}`);
        if (i === 0) expect(v.reason).toMatch(/^score 1\.\d\d: label_entropy 0\.45, /);
      }
      expect(actions).toEqual([...Array<string>(n - 1).fill('nxdomain/threshold'), 'quarantine/threshold']);
    }
  });

  it('blocks outside the window do not add up', () => {
    const p = make();
    const state = p.newSessionState();
    const j = (atMs: number) => p.judge({ name: bulkName(atMs), qtype: 1, session: session('batch'), state, ageDays: 400, atMs });
    expect(j(0).action).toBe('nxdomain');
    expect(j(600_001).action).toBe('nxdomain');
    expect(j(600_002).action).toBe('quarantine');
  });

  it('quarantines on the information volume to one domain, before the crossing query leaves', () => {
    const p = make(NO_ENCODED);
    const state = p.newSessionState();
    const r = prng(5);
    let at: number | undefined;
    let sentChars = 0;
    for (let i = 0; i < 400 && at === undefined; i++) {
      const name = `${hex(r.bytes(6))}.upd8r.com`; // 12 hex chars a query: invisible per query
      const v = p.judge({ name, qtype: 1, session: session('batch'), state, ageDays: 400, atMs: i * 60_000 });
      if (v.action === 'quarantine') {
        expect(v.rule).toBe('accumulation');
        expect(v.reason).toMatch(/^~7\d\d B of unique labels to upd8r\.com$/);
        at = i;
      } else {
        expect(v.action).toBe('answer');
        observe(p, state, { name, qtype: 1, atMs: i * 60_000, forwarded: true, rcode: 0, blocked: false });
        sentChars += 12;
      }
    }
    // batch budget 768 estimated bytes ≈ 0.59 B per hex char → about 108 queries
    expect(at).toBeGreaterThan(95);
    expect(at).toBeLessThan(120);
    expect(sentChars).toBe(12 * at!);
  });

  it('does not count cache hits or blocked queries as information sent', () => {
    const p = make();
    const state = p.newSessionState();
    observe(p, state, { name: 'abcdef123456.upd8r.com', qtype: 1, atMs: 0, forwarded: false, rcode: 0, blocked: false });
    observe(p, state, { name: 'abcdef123457.upd8r.com', qtype: 1, atMs: 0, forwarded: false, rcode: 3, blocked: true });
    expect(state.domainCount).toBe(0);
    observe(p, state, { name: 'abcdef123458.upd8r.com', qtype: 1, atMs: 0, forwarded: true, rcode: 0, blocked: false });
    expect(state.domains['upd8r.com']!.volumeBytes).toBeGreaterThan(0);
  });

  it('sums volume over young domains: spread across ten domains still quarantines', () => {
    // the session-wide budget (domains of unknown or young age) is off here, to see the young sum on its own
    const p = make({ session_types: { batch: { session_volume_budget_bytes: 1e9, encoded_volume_budget_bytes: 1e9, total_volume_budget_bytes: 1e9 } } });
    const state = p.newSessionState();
    const r = prng(6);
    let quarantinedAt: number | undefined;
    for (let i = 0; i < 1000 && quarantinedAt === undefined; i++) {
      const name = `${hex(r.bytes(6))}.d${i % 10}-young.net`;
      const v = p.judge({ name, qtype: 1, session: session('batch'), state, ageDays: 3, atMs: i * 60_000 });
      if (v.action === 'quarantine') {
        expect(v.reason).toMatch(/young domains$/);
        quarantinedAt = i;
      } else observe(p, state, { name, qtype: 1, atMs: i * 60_000, forwarded: true, rcode: 0, blocked: false });
    }
    expect(quarantinedAt).toBeGreaterThan(150);
    expect(quarantinedAt).toBeLessThan(260);
    // the same traffic to old domains never reaches any per-domain budget in this many queries
    const old = p.newSessionState();
    for (let i = 0; i < 260; i++) {
      const name = `${hex(r.bytes(6))}.d${i % 10}-old.net`;
      expect(p.judge({ name, qtype: 1, session: session('batch'), state: old, ageDays: 900, atMs: i * 60_000 }).action).toBe('answer');
      observe(p, old, { name, qtype: 1, atMs: i * 60_000, forwarded: true, rcode: 0, blocked: false });
    }
  });
});

describe('session-wide information budget (issue 14)', () => {
  /** Feed `name(i)` until quarantine or `max` queries; returns the quarantining index and its verdict. */
  const spread = (p: Policy, name: (i: number) => string, ageDays: number | undefined, max = 2000) => {
    const state = p.newSessionState();
    for (let i = 0; i < max; i++) {
      const v = p.judge({ name: name(i), qtype: 1, session: session('batch'), state, ageDays, atMs: i * 1000 });
      if (v.action !== 'answer') return { at: i, v, state };
      observe(p, state, { name: name(i), qtype: 1, atMs: i * 1000, forwarded: true, rcode: 0, blocked: false });
    }
    return { at: undefined, v: undefined, state };
  };

  it('spreading over ten domains of unknown age buys nothing: quarantined once the sum reaches the budget', () => {
    const r = prng(14);
    const labels = Array.from({ length: 2000 }, () => hex(r.bytes(6)));
    const got = spread(make(NO_ENCODED), (i) => `${labels[i]}.d${i % 10}-attacker.net`, undefined);
    expect(got.v).toMatchObject({ action: 'quarantine', rule: 'accumulation' });
    expect(got.v!.reason).toMatch(/domains of unknown or young age$/);
    // no single domain is near its own budget (768): it was the session-wide sum
    for (const d of Object.values(got.state.domains)) expect(d.volumeBytes).toBeLessThan(300);
    expect(got.state.freshVolumeBytes).toBeGreaterThan(800);
    expect(got.state.freshVolumeBytes).toBeLessThan(896); // batch budget: the query that would cross it did not leave
  });

  it('established domains (old, or a platform apex) are not in the session-wide account', () => {
    const r = prng(15);
    const labels = Array.from({ length: 400 }, () => hex(r.bytes(6)));
    expect(spread(make(NO_ENCODED), (i) => `${labels[i]}.d${i % 10}-old.net`, 900, 400).at).toBeUndefined();
    const platform = spread(make(NO_ENCODED), (i) => `${labels[i]}.d${i % 10}.cloudfront.net`, undefined, 400);
    expect(platform.at).toBeUndefined();
    expect(platform.state.freshVolumeBytes).toBe(0);
  });

  it('evicting domains cannot wipe the account: a flood of other domains between bursts changes nothing', () => {
    const p = make(NO_ENCODED, { max_domains_per_session: 16 });
    const state = p.newSessionState();
    const r = prng(16);
    let t = 0;
    let quarantined: string | undefined;
    for (let burst = 0; burst < 100 && quarantined === undefined; burst++) {
      for (let i = 0; i < 10 && quarantined === undefined; i++) {
        const name = `${hex(r.bytes(6))}.d${burst % 40}-attacker.net`;
        const v = p.judge({ name, qtype: 1, session: session('batch'), state, ageDays: undefined, atMs: (t += 1000) });
        if (v.action === 'quarantine') quarantined = v.reason;
        else observe(p, state, { name, qtype: 1, atMs: t, forwarded: true, rcode: 0, blocked: false });
      }
      // 32 plain domains evict every attacker domain (a minute later: past the second chance)
      t += 700_000;
      for (let j = 0; j < 32; j++) observe(p, state, { name: `plain${burst}x${j}.org`, qtype: 1, atMs: (t += 10), forwarded: true, rcode: 0, blocked: false });
    }
    expect(quarantined).toMatch(/domains of unknown or young age$/);
  });

  it('a domain whose age becomes known as old leaves the account; one that turns out young stays', () => {
    const p = make();
    const state = p.newSessionState();
    for (let i = 0; i < 20; i++) observe(p, state, { name: `${hex(prng(i).bytes(6))}.late-age.net`, qtype: 1, atMs: i, forwarded: true, rcode: 0, blocked: false });
    const before = state.freshVolumeBytes;
    expect(before).toBeGreaterThan(100);
    p.judge({ name: 'www.late-age.net', qtype: 1, session: session('batch'), state, ageDays: 3, atMs: 100 });
    expect(state.freshVolumeBytes).toBe(before);
    p.judge({ name: 'www.late-age.net', qtype: 1, session: session('batch'), state, ageDays: 900, atMs: 200 });
    expect(state.freshVolumeBytes).toBe(0);
    // a later lookup that missed its budget (age undefined) keeps the known age
    p.judge({ name: 'www.late-age.net', qtype: 1, session: session('batch'), state, ageDays: undefined, atMs: 300 });
    expect(state.freshVolumeBytes).toBe(0);
  });
});

describe('encoded-label budget (issue 14)', () => {
  const feed = (p: Policy, name: (i: number) => string, ageDays: number | undefined, max = 2000, gapMs = 1000) => {
    const state = p.newSessionState();
    for (let i = 0; i < max; i++) {
      const v = p.judge({ name: name(i), qtype: 1, session: session('batch'), state, ageDays, atMs: i * gapMs });
      if (v.action !== 'answer') return { at: i, v, state };
      observe(p, state, { name: name(i), qtype: 1, atMs: i * gapMs, forwarded: true, rcode: 0, blocked: false });
    }
    return { at: undefined, v: undefined, state };
  };
  const r = prng(41);
  const codecs = { hex, base32, base64url } as const;

  it.each(Object.keys(codecs) as (keyof typeof codecs)[])('%s labels of 8–16 chars, one domain or ten, old or of unknown age: quarantined before 512 payload bytes leave', (codec) => {
    for (const [domains, age] of [[1, undefined], [10, undefined], [10, 900], [1, 900]] as const) {
      let payload = 0;
      const sizes: number[] = [];
      const labels = Array.from({ length: 400 }, (_, i) => {
        const bytes = 5 + (i % 6); // 5–10 bytes: 8–16 encoded chars
        sizes.push(bytes);
        return codecs[codec](r.bytes(bytes)).toLowerCase();
      });
      const got = feed(make(), (i) => `${labels[i]}.d${i % domains}-x.net`, age, 400);
      expect(got.v).toMatchObject({ action: 'quarantine', rule: 'accumulation' });
      expect(got.v!.reason).toMatch(/^~\d+ B of encoded-looking labels \(any domain\)$/);
      for (let i = 0; i < got.at!; i++) payload += sizes[i]!;
      expect(payload).toBeLessThanOrEqual(512);
      expect(got.state.encodedBytes).toBeLessThan(432); // the query that would cross the budget did not leave
    }
  });

  it('plain names, words, region names and UUIDs do not count; a platform apex does not count', () => {
    const p = make();
    const words = ['download', 'assets-prod', 'us-east-1', 'eu-west-2', 'kubernetes', 'node21', 'prod-eu-frankfurt', 'yahoovpaidtwoint'];
    const uuid = () => {
      const h = hex(r.bytes(16));
      return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
    };
    const got = feed(p, (i) => (i % 2 === 0 ? `${words[(i / 2) % words.length]}${i}.site${i % 50}.com` : `${uuid()}.tracker.example`), undefined, 60);
    expect(got.state.encodedBytes).toBe(0);
    const platform = feed(p, (i) => `${hex(r.bytes(8))}.t${i}.cloudfront.net`, undefined, 200);
    expect(platform.at).toBeUndefined();
    expect(platform.state.encodedBytes).toBe(0);
  });

  it('is not wiped by a release: the account is the session state\'s, a fresh state starts at 0', () => {
    const p = make();
    const s = p.newSessionState();
    expect(s.encodedBytes).toBe(0);
    observe(p, s, { name: '3k9xq7mz2v.attacker.example', qtype: 1, atMs: 0, forwarded: true, rcode: 0, blocked: false });
    expect(s.encodedBytes).toBeGreaterThan(5);
    // the same label again (to another domain too) costs nothing more: only new content counts
    const before = s.encodedBytes;
    observe(p, s, { name: '3k9xq7mz2v.other.example', qtype: 1, atMs: 1, forwarded: true, rcode: 0, blocked: false });
    expect(s.encodedBytes).toBe(before);
  });
});

describe('session total (issue 14)', () => {
  it('bounds words over old domains, paced under the bandwidth cap: quarantined once the total reaches the budget', () => {
    const p = make();
    const state = p.newSessionState();
    const r = prng(42);
    const w = ['able', 'acid', 'area', 'army', 'baby', 'back', 'ball', 'band', 'bank', 'base', 'bath', 'bear', 'beat', 'beer', 'bell', 'belt'];
    let at: number | undefined;
    for (let i = 0; i < 3000 && at === undefined; i++) {
      const name = `${w[r.int(16)]}-${w[r.int(16)]}-${w[r.int(16)]}.d${i % 10}-old.net`;
      const v = p.judge({ name, qtype: 1, session: session('batch'), state, ageDays: 900, atMs: i * 20_000 });
      if (v.action === 'quarantine') {
        expect(v.rule).toBe('accumulation');
        expect(v.reason).toMatch(/^~\d+ B of unique labels to any domain \(session total\)$/);
        at = i;
      } else {
        expect(v.action).toBe('answer'); // plain-looking, paced: nothing else stops it
        observe(p, state, { name, qtype: 1, atMs: i * 20_000, forwarded: true, rcode: 0, blocked: false });
      }
    }
    expect(at).toBeDefined();
    expect(state.allVolumeBytes).toBeLessThan(1280);
    expect(state.allVolumeBytes).toBeGreaterThan(1100);
  });

  it('does not count a platform apex, nor labels the session already sent', () => {
    const p = make();
    const state = p.newSessionState();
    for (let i = 0; i < 300; i++) observe(p, state, { name: `${hex(prng(i).bytes(8))}.t${i}.cloudfront.net`, qtype: 1, atMs: i, forwarded: true, rcode: 0, blocked: false });
    expect(state.allVolumeBytes).toBe(0);
    observe(p, state, { name: 'www.site0.org', qtype: 1, atMs: 1000, forwarded: true, rcode: 0, blocked: false });
    const once = state.allVolumeBytes;
    for (let i = 1; i < 100; i++) observe(p, state, { name: `www.site${i}.org`, qtype: 1, atMs: 1000 + i, forwarded: true, rcode: 0, blocked: false });
    expect(state.allVolumeBytes - once).toBeLessThan(100 * 1.2); // `www` again: ~log2(labels known) bits each
  });
});

describe('bandwidth cap (issue 14)', () => {
  const feed = (p: Policy, state: ReturnType<Policy['newSessionState']>, names: readonly string[], startMs: number, gapMs: number, ageDays: number | undefined = 900) => {
    const out = [];
    for (let i = 0; i < names.length; i++) {
      const atMs = startMs + i * gapMs;
      const v = p.judge({ name: names[i]!, qtype: 1, session: session('batch'), state, ageDays, atMs });
      out.push(v);
      if (v.action === 'answer') observe(p, state, { name: names[i]!, qtype: 1, atMs, forwarded: true, rcode: 0, blocked: false });
    }
    return out;
  };
  const r = prng(17);
  const burst = (n: number, domain: (i: number) => string) => Array.from({ length: n }, (_, i) => `${hex(r.bytes(8))}.${domain(i)}`);

  it('blocks new names past the bytes a minute of the session type, whatever the score, and lets them through after a quiet minute', () => {
    const p = make(NO_ENCODED);
    const state = p.newSessionState();
    // 10 old domains (no per-domain or session-wide budget applies), 16 hex chars a query, 4 queries a second
    const names = burst(200, (i) => `d${i % 10}-old.net`);
    const got = feed(p, state, names, 0, 250);
    const first = got.findIndex((v) => v.action !== 'answer');
    expect(got[first]).toMatchObject({ action: 'nxdomain', rule: 'bandwidth' });
    expect(got[first]!.reason).toMatch(/^~\d+ B of new labels a minute \(cap 640\)$/);
    expect(got[first]!.score!.total).toBeLessThan(0.7);
    expect(first).toBeGreaterThan(50); // 640 B at ~9 B a name
    expect(first).toBeLessThan(90);
    expect(got.slice(first).every((v) => v.rule === 'bandwidth' || v.action === 'answer')).toBe(true);
    expect(got.some((v) => v.action === 'quarantine')).toBe(false); // a rate limit, not evidence
    // names already answered are still answered; after a quiet few minutes new ones are too
    expect(p.judge({ name: `${hex(r.bytes(8))}.d0-old.net`, qtype: 1, session: session('batch'), state, ageDays: 900, atMs: 50_001 }).rule).toBe('bandwidth');
    expect(p.judge({ name: names[0]!, qtype: 1, session: session('batch'), state, ageDays: 900, atMs: 50_002 }).action).toBe('answer');
    expect(feed(p, state, burst(5, (i) => `d${i}-old.net`), 400_000, 1000).map((v) => v.action)).toEqual(['answer', 'answer', 'answer', 'answer', 'answer']);
  });

  it('does not count names below a platform apex, nor repeated names', () => {
    const p = make();
    const state = p.newSessionState();
    expect(feed(p, state, burst(200, (i) => `t${i}.cloudfront.net`), 0, 100).every((v) => v.action === 'answer')).toBe(true);
    const again = burst(40, (i) => `d${i % 10}-old.net`);
    expect(feed(p, state, again, 30_000, 100).every((v) => v.action === 'answer')).toBe(true);
    // the same names over and over add nothing
    for (let k = 0; k < 5; k++) expect(feed(p, state, again, 40_000 + k * 5000, 100).every((v) => v.action === 'answer')).toBe(true);
  });
});

describe('sticky blocks (issue 14)', () => {
  const tunnel = 'f0e1d2c3b4a5968778695a4b3c2d1e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c.e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7081.attacker.net';

  it('after a scored block, further new names to that domain are blocked (not answered in between) and count toward quarantine', () => {
    const p = make({ session_types: { interactive: { quarantine_after_blocks: 3 } } });
    const state = p.newSessionState();
    const s = session('interactive');
    const first = p.judge({ name: tunnel, qtype: 16, session: s, state, ageDays: undefined, atMs: 0 });
    expect(first).toMatchObject({ action: 'nxdomain', rule: 'threshold' });
    // a short, plain-looking chunk that alone scores far below the threshold
    const chunk = p.judge({ name: 'ab12.attacker.net', qtype: 1, session: s, state, ageDays: undefined, atMs: 5_000 });
    expect(chunk).toMatchObject({ action: 'nxdomain', rule: 'sticky' });
    expect(chunk.score!.total).toBeLessThan(0.75);
    expect(chunk.reason).toBe('new name to attacker.net, blocked 5 s ago');
    expect(p.judge({ name: 'cd34.attacker.net', qtype: 1, session: s, state, ageDays: undefined, atMs: 6_000 })).toMatchObject({ action: 'quarantine', rule: 'threshold' });
  });

  it('other domains, names already answered before the block, and the time after the window are not affected', () => {
    const p = make();
    const state = p.newSessionState();
    const s = session('interactive');
    observe(p, state, { name: 'www.attacker.net', qtype: 1, atMs: 0, forwarded: true, rcode: 0, blocked: false });
    expect(p.judge({ name: tunnel, qtype: 16, session: s, state, ageDays: undefined, atMs: 1 }).rule).toBe('threshold');
    expect(p.judge({ name: 'www.attacker.net', qtype: 1, session: s, state, ageDays: undefined, atMs: 2 }).action).toBe('answer');
    expect(p.judge({ name: 'api.example.org', qtype: 1, session: s, state, ageDays: undefined, atMs: 3 }).action).toBe('answer');
    // block_window_ms (600 s) after the block: answered again
    expect(p.judge({ name: 'ab12.attacker.net', qtype: 1, session: s, state, ageDays: undefined, atMs: 600_001 }).action).toBe('answer');
  });

  it('a fresh session state (what an analyst release installs) forgets the sticky block', () => {
    const p = make();
    const state = p.newSessionState();
    const s = session('interactive');
    p.judge({ name: tunnel, qtype: 16, session: s, state, ageDays: undefined, atMs: 0 });
    expect(p.judge({ name: 'ab12.attacker.net', qtype: 1, session: s, state, ageDays: undefined, atMs: 1 }).rule).toBe('sticky');
    expect(p.judge({ name: 'ab12.attacker.net', qtype: 1, session: s, state: p.newSessionState(), ageDays: undefined, atMs: 2 }).action).toBe('answer');
  });
});

describe('answer reuse on repeated names (cache hits)', () => {
  const judge = (p: Policy, state: ReturnType<Policy['newSessionState']>, name: string, atMs: number, qtype = 1, type: SessionType = 'interactive') =>
    p.judge({ name, qtype, session: session(type), state, ageDays: undefined, atMs });
  const name = 'api7.svc.example.com';

  it('gives the same answer verdict within the reuse time while nothing changed, and recomputes after', () => {
    const p = make();
    const state = p.newSessionState();
    // The domain has some fan-out, so the score is not 0 and a verdict object is built for it.
    for (let i = 0; i < 5; i++) observe(p, state, { name: `h${i}.svc.example.com`, qtype: 1, atMs: i, forwarded: true, rcode: 0, blocked: false });
    // A first sighting keeps nothing (a name that never repeats must die young); the second is memoised.
    const sighting = judge(p, state, name, 50);
    const first = judge(p, state, name, 100);
    expect(first).not.toBe(sighting);
    expect(first).toEqual(sighting);
    expect(first.action).toBe('answer');
    expect(first.score!.total).toBeGreaterThan(0);
    expect(judge(p, state, name, 600)).toBe(first);
    // a second later: computed afresh (decay moved the fan-out)
    const later = judge(p, state, name, 1100);
    expect(later).not.toBe(first);
    expect(later.score!.total).toBeLessThanOrEqual(first.score!.total);
  });

  it('recomputes when the session window changed, or for another query type, session type or session', () => {
    const p = make();
    const state = p.newSessionState();
    const first = judge(p, state, name, 0);
    expect(judge(p, state, name, 1, 16)).not.toBe(first); // TXT
    const again = judge(p, state, name, 2);
    expect(judge(p, state, name, 3)).toBe(again);
    observe(p, state, { name: 'x1.svc.example.com', qtype: 1, atMs: 4, forwarded: true, rcode: 0, blocked: false });
    const afterForward = judge(p, state, name, 5);
    expect(afterForward).not.toBe(again);
    expect(afterForward.score!.signals.find((s) => s.id === 'fanout')!.value).toBeGreaterThanOrEqual(again.score!.signals.find((s) => s.id === 'fanout')!.value);
    expect(judge(p, state, name, 6, 1, 'batch')).not.toBe(afterForward);
    expect(judge(p, p.newSessionState(), name, 7)).not.toBe(afterForward);
  });

  it('never reuses a block: every repeat of a blocked name counts toward the quarantine', () => {
    const p = make();
    const state = p.newSessionState();
    const verdicts = [0, 1, 2].map((i) => judge(p, state, bulkName(1), i, 1, 'batch'));
    expect(verdicts.map((v) => v.action)).toEqual(['nxdomain', 'quarantine', 'quarantine']);
  });

  it('reuses a quarantine verdict for a repeated name (an observe-mode flood of cache hits), still noting every block', () => {
    for (const mode of ['observe', 'enforce'] as const) {
      const p = make({ mode });
      const state = p.newSessionState();
      const verdicts = [0, 1, 2, 3, 4].map((i) => judge(p, state, bulkName(1), i, 1, 'batch'));
      expect(verdicts.map((v) => v.action), mode).toEqual(['nxdomain', 'quarantine', 'quarantine', 'quarantine', 'quarantine']);
      expect(verdicts[2], mode).toBe(verdicts[1]); // not scored again
      expect(verdicts[4], mode).toBe(verdicts[1]);
      expect(state.blocks, mode).toEqual([0, 1, 2, 3, 4]); // every repeat is a block in the window, as judged afresh
      // Past the reuse time, or once the window changed, it is judged afresh.
      expect(judge(p, state, bulkName(1), 2000, 1, 'batch'), mode).not.toBe(verdicts[1]);
    }
  });

  it('remembers names that repeat even when more than the probation map of other names came between', () => {
    // An agent cycling through 1,000 names: from the second round on every name is memoised, so the third
    // round reuses the second round's verdicts (a name seen once must not stay stuck in probation).
    const p = make();
    const state = p.newSessionState();
    const names = Array.from({ length: 1000 }, (_, i) => `h${i}.cdn.example.com`);
    names.forEach((n, i) => judge(p, state, n, i / 10));
    const second = names.map((n, i) => judge(p, state, n, 100 + i / 10));
    const third = names.map((n, i) => judge(p, state, n, 200 + i / 10));
    expect(third.filter((v, i) => v === second[i])).toHaveLength(names.length);
  });

  it('reuses for at most a hundredth of the fan-out half-life', () => {
    const p = make({}, { fanout_window_ms: 1000 }); // → 10 ms
    const state = p.newSessionState();
    judge(p, state, name, 0); // first sighting: not memoised
    const first = judge(p, state, name, 0);
    expect(judge(p, state, name, 9)).toBe(first);
    expect(judge(p, state, name, 10)).not.toBe(first);
  });
});

describe('facts handed from judge to observe', () => {
  it('a verdict carries its name facts, and observe() with them builds the same window as without', () => {
    const p = make();
    const withFacts = p.newSessionState();
    const without = p.newSessionState();
    for (let i = 0; i < 50; i++) {
      const name = `${bulkName(i).slice(0, 40 + i)}.t.example.net`;
      const v = p.judge({ name, qtype: 1, session: session(), state: withFacts, ageDays: undefined, atMs: i });
      expect(v.facts?.split.name).toBe(name);
      observe(p, withFacts, { name, qtype: 1, atMs: i, forwarded: true, rcode: 0, blocked: false, facts: v.facts });
      p.judge({ name, qtype: 1, session: session(), state: without, ageDays: undefined, atMs: i });
      observe(p, without, { name, qtype: 1, atMs: i, forwarded: true, rcode: 0, blocked: false });
    }
    expect(withFacts.domains['example.net']!.volumeBytes).toBeGreaterThan(0);
    expect(JSON.stringify(withFacts)).toBe(JSON.stringify(without));
  });
});

describe('observe mode', () => {
  it('global observe: the verdict says what would happen, not enforced', () => {
    const p = make({ mode: 'observe' });
    const v = p.judge({ name: bulkName(2), qtype: 1, session: session(), state: p.newSessionState(), ageDays: 400, atMs: 0 });
    expect(v).toMatchObject({ action: 'nxdomain', rule: 'threshold', enforced: false, mode: 'observe' });
    expect(p.mode('interactive')).toBe('observe');
  });

  it('per session type, overriding the global mode either way', () => {
    const cfg: unknown = { mode: 'enforce', session_types: { interactive: { mode: 'observe' } } };
    const p = make(cfg);
    expect([p.mode('interactive'), p.mode('batch'), p.mode('scheduled')]).toEqual(['observe', 'enforce', 'enforce']);
    const q = make({ mode: 'observe', session_types: { batch: { mode: 'enforce' } } } satisfies Partial<Record<keyof PolicyConfig, unknown>>);
    expect([q.mode('interactive'), q.mode('batch')]).toEqual(['observe', 'enforce']);
    const v = q.judge({ name: 'dns.google', qtype: 1, session: session('interactive'), state: q.newSessionState(), ageDays: undefined, atMs: 0 });
    expect(v).toMatchObject({ action: 'nxdomain', rule: 'deny_list', enforced: false, mode: 'observe' });
  });
});

describe('judgeAnswer on a repeated name (the check is remembered per answer)', () => {
  it('a memoised name is checked again whenever its answer changes, and a remembered answer keeps its result', () => {
    const p = make();
    const state = p.newSessionState();
    const name = 'app.attacker.com';
    for (let i = 0; i < 2; i++) p.judge({ name, qtype: 1, session: session(), state, ageDays: undefined, atMs: i }); // memoised now
    const publicAnswer = ['93.184.216.34'];
    const rebound = ['93.184.216.34', '169.254.169.254'];
    expect(p.judgeAnswer(name, publicAnswer, session())).toBeUndefined();
    expect(p.judgeAnswer(name, publicAnswer, session())).toBeUndefined();
    expect(p.judgeAnswer(name, rebound, session())?.reason).toBe('public name points at 169.254.169.254');
    expect(p.judgeAnswer(name, rebound, session())?.reason).toBe('public name points at 169.254.169.254');
    expect(p.judgeAnswer(name, ['10.0.0.1'], session())?.reason).toBe('public name points at 10.0.0.1');
    expect(p.judgeAnswer(name, publicAnswer, session())).toBeUndefined();
    // the mode comes from the asking session, not from the remembered check
    const observing = make({ session_types: { batch: { mode: 'observe' } } });
    for (let i = 0; i < 2; i++) observing.judge({ name, qtype: 1, session: session(), state: observing.newSessionState(), ageDays: undefined, atMs: i });
    expect(observing.judgeAnswer(name, rebound, session('interactive'))?.enforced).toBe(true);
    expect(observing.judgeAnswer(name, rebound, session('batch'))?.enforced).toBe(false);
  });
});

describe('ipv4Number', () => {
  it('reads dotted quads and nothing else', () => {
    expect(ipv4Number('0.0.0.0')).toBe(0);
    expect(ipv4Number('255.255.255.255')).toBe(0xffffffff);
    expect(ipv4Number('10.1.2.3')).toBe(0x0a010203);
    expect(ipv4Number('192.168.0.1')).toBe(0xc0a80001);
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '1.2.3.04', '01.2.3.4', '1..2.3', '.1.2.3', '1.2.3.', 'a.b.c.d', '::1', '1.2.3.4 ']) {
      expect(ipv4Number(bad), bad).toBeUndefined();
    }
  });
});

describe('judgeAnswer (DNS rebinding)', () => {
  const p = make({ allow: ['corp.example'], rebinding: { allow: ['dev.example.com'] } });
  it.each([
    ['127.0.0.1', true], ['10.1.2.3', true], ['172.16.0.1', true], ['172.32.0.1', false], ['192.168.1.1', true],
    ['169.254.169.254', true], ['100.64.0.1', true], ['0.0.0.0', true], ['8.8.8.8', false], ['93.184.216.34', false],
    ['::1', true], ['::', true], ['fd00::1', true], ['fc00::1', true], ['fe80::1', true], ['2606:4700::1111', false],
    ['::ffff:127.0.0.1', true], ['::ffff:8.8.8.8', false],
    // range borders
    ['9.255.255.255', false], ['11.0.0.0', false], ['172.15.255.255', false], ['172.31.255.255', true], ['192.167.255.255', false],
    ['192.169.0.0', false], ['169.253.255.255', false], ['169.255.0.0', false], ['100.63.255.255', false], ['100.127.255.255', true],
    ['100.128.0.0', false], ['126.255.255.255', false], ['128.0.0.0', false], ['1.0.0.0', false], ['255.255.255.255', false],
  ] as const)('%s blocked=%s for a public name', (address, blocked) => {
    const v = p.judgeAnswer('metadata.attacker.com', [address], session());
    if (blocked) expect(v).toEqual({ action: 'nxdomain', rule: 'rebinding', enforced: true, mode: 'enforce', reason: `public name points at ${address}` });
    else expect(v).toBeUndefined();
  });

  it('lets internal zones, rebinding-allowed zones and non-public names point inside', () => {
    expect(p.judgeAnswer('db.corp.example', ['10.0.0.5'], session())).toBeUndefined();
    expect(p.judgeAnswer('api.dev.example.com', ['127.0.0.1'], session())).toBeUndefined();
    expect(p.judgeAnswer('printer.lan', ['192.168.1.9'], session())).toBeUndefined();
    expect(p.judgeAnswer('10.0.0.1.nip.io', ['10.0.0.1'], session())?.rule).toBe('rebinding');
  });

  it('can be switched off, and CGNAT can be allowed', () => {
    expect(make({ rebinding: { enabled: false } }).judgeAnswer('x.attacker.com', ['127.0.0.1'], session())).toBeUndefined();
    expect(make({ rebinding: { block_cgnat: false } }).judgeAnswer('x.attacker.com', ['100.64.0.1'], session())).toBeUndefined();
  });
});

describe('the repeat floor (scoring.repeat_floor_ms): a codebook of domains paced between the old and the new default', () => {
  // 16 bare attacker domains answered with TTL 0; each asked again 60–100 s after its last departure (past the former
  // 30 s floor, inside the 120 s default). A query every 4 s: a domain 100 s since its last departure is asked at once
  // (no choice: 0 bits), else one picked uniformly among those free (60 s or more, or not yet asked), carrying
  // log2(of them) bits. Bounded: at most 4 simulated hours.
  function pacedDomains(scoring: unknown): { carriedBytes: number; verdict: Verdict | undefined; repeatBytes: number } {
    const p = make({}, scoring);
    const state = p.newSessionState();
    const s = session('interactive');
    const r = prng(31);
    const last = new Array<number>(16).fill(-Infinity);
    let bits = 0;
    for (let t = 0; t < 4 * 3_600_000; t += 4_000) {
      const overdue = last.findIndex((at) => at !== -Infinity && t - at >= 100_000);
      const free = overdue >= 0 ? [overdue] : last.flatMap((at, d) => (t - at >= 60_000 ? [d] : []));
      if (free.length === 0) continue;
      const d = free[r.bytes(1)[0]! % free.length]!;
      const name = `k${d}q-cb.net`;
      const v = p.judge({ name, qtype: 1, session: s, state, ageDays: undefined, atMs: t });
      if (v.action !== 'answer') return { carriedBytes: bits / 8, verdict: v, repeatBytes: state.repeatBytes };
      observe(p, state, { name, qtype: 1, atMs: t, forwarded: true, rcode: 0, blocked: false, facts: v.facts });
      if (last[d] !== -Infinity) bits += Math.log2(free.length);
      last[d] = t;
    }
    return { carriedBytes: bits / 8, verdict: undefined, repeatBytes: state.repeatBytes };
  }

  it('defaults to 120 s', () => {
    expect(scoringSchema.parse({}).repeat_floor_ms).toBe(120_000);
  });

  it('with the default, the choice of domain is charged for every repeat sooner than 120 s: quarantined before 512 B left', () => {
    const out = pacedDomains({});
    expect(out.verdict?.action).toBe('quarantine');
    expect(out.verdict?.reason).toMatch(/in which known names were asked again/);
    expect(out.carriedBytes).toBeGreaterThan(64); // the channel worked until the budget closed it (~110 B)
    expect(out.carriedBytes).toBeLessThan(512);
    expect(out.repeatBytes).toBeGreaterThan(out.carriedBytes); // charged at least what it carried
  });

  it('with the former 30 s floor the same codebook was never charged (why the default moved)', () => {
    const out = pacedDomains({ repeat_floor_ms: 30_000 });
    expect(out.verdict).toBeUndefined(); // 4 hours, never stopped
    expect(out.carriedBytes).toBeGreaterThan(384); // ~448 B in the 4 hours, and on
    expect(out.repeatBytes).toBeLessThan(32);
  });
});
