// A cache hit's verdict reused through its cache entry (src/policy/name-memo.ts, Policy.reuse / answerCleared,
// CachingResolver.slotFor, src/pipeline.ts judgeAndAct): the verdict judge() gave a name is given again only while
// judging afresh would give the same, and never after the lists change; looking at a cache entry to judge a query is
// not a use of it (a blocked query leaves the LRU order alone). The pipeline on a real CachingResolver over a
// scripted upstream.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { CachingResolver, type CacheConfig } from '../../src/dns/cache.js';
import type { Resolution, Resolver } from '../../src/dns/upstream.js';
import { decodeQuery, type Query, type Reply } from '../../src/dns/wire.js';
import { createLogger, createMetrics } from '../../src/ops/telemetry.js';
import { createPipeline } from '../../src/pipeline.js';
import { Policy, type SessionInfo, type SessionState } from '../../src/policy/judge.js';
import { policySchema, scoringSchema } from '../../src/policy/schema.js';
import { SessionDirectory } from '../../src/sessions/directory.js';
import { RpzSet } from '../../src/zones/rpz.js';

const newPolicy = (): Policy => new Policy(policySchema.parse({}), scoringSchema.parse({}));
const session: SessionInfo = { id: 's1', user: 'u', role: 'r', type: 'interactive' };
const ADDRESSES = ['198.51.100.7'];

function query(name: string, atMs = 1_000_000): Query {
  const labels = name.split('.').map((l) => Buffer.from(l));
  const packet = Buffer.concat([Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]), ...labels.flatMap((l) => [Buffer.from([l.length]), l]), Buffer.from([0, 0, 1, 0, 1])]);
  const d = decodeQuery(packet, { address: '127.0.0.1', port: 1, transport: 'udp' }, atMs, 1232);
  if (!d.ok) throw new Error(d.reason);
  return d.query;
}

const reply = (addresses: string[]): Reply => ({ rcode: 0, flags: 0x8180, tc: false, answerCount: 1, authorityCount: 0, additionalCount: 0, body: '', ttlOffsets: '', edeOptions: '', cacheTtlSec: 300, addresses, strippedRecords: 0 });

class Upstream implements Resolver {
  asked = 0;
  resolve(): Promise<Resolution> {
    this.asked++;
    return Promise.resolve({ ok: true, reply: reply(['198.51.100.7']), via: 'upstream', ageSec: 0 });
  }
}

const cacheConfig = (maxEntries: number): CacheConfig => ({ max_entries: maxEntries, max_ttl_s: 86_400, negative_max_ttl_s: 3600, servfail_ttl_s: 3, serve_stale: { enabled: false, max_stale_s: 0, answer_ttl_s: 30 } });

describe('Policy.reuse: the verdict judge() last gave a name, while judging afresh would give the same', () => {
  function judged(policy = newPolicy()) {
    const state = policy.newSessionState();
    const input = { name: 'www.example.com', qtype: 1, session, state, ageDays: undefined, atMs: 5000 };
    policy.judge(input); // a first sighting keeps no memo
    expect(policy.lastMemoHandle).toBeUndefined();
    const verdict = policy.judge(input);
    const handle = policy.lastMemoHandle;
    expect(handle).toBeDefined();
    return { policy, state, input, verdict, handle };
  }

  it('gives the same verdict object for the same inputs within the reuse time', () => {
    const { policy, state, verdict, handle } = judged();
    expect(verdict.action).toBe('answer');
    expect(policy.reuse(handle, 1, 'interactive', state, undefined, 5000)).toBe(verdict);
    expect(policy.reuse(handle, 1, 'interactive', state, undefined, 5999)).toBe(verdict);
  });

  it('gives nothing when any input judge() reads differs', () => {
    const { policy, state, handle } = judged();
    expect(policy.reuse(handle, 28, 'interactive', state, undefined, 5000)).toBeUndefined(); // another query type
    expect(policy.reuse(handle, 1, 'batch', state, undefined, 5000)).toBeUndefined(); // another session type
    expect(policy.reuse(handle, 1, 'interactive', policy.newSessionState(), undefined, 5000)).toBeUndefined(); // another session's window
    expect(policy.reuse(handle, 1, 'interactive', state, 3, 5000)).toBeUndefined(); // the domain's age learnt since
    expect(policy.reuse(handle, 1, 'interactive', state, undefined, 6000)).toBeUndefined(); // past the reuse time (1 s)
    expect(policy.reuse(handle, 1, 'interactive', state, undefined, 4999)).toBeUndefined(); // time going backwards
    expect(policy.reuse(undefined, 1, 'interactive', state, undefined, 5000)).toBeUndefined();
  });

  it('gives nothing once the session window changed (a query of the session left)', () => {
    const { policy, state, handle } = judged();
    policy.account(state, { kind: 'query', name: 'other.example.org', qtype: 1, atMs: 5001, ageDays: undefined, verdict: undefined, sent: true });
    expect(policy.reuse(handle, 1, 'interactive', state, undefined, 5002)).toBeUndefined();
  });

  it('gives nothing after the learned deny list changes: the name is judged afresh, and denied', () => {
    const { policy, state, handle } = judged();
    policy.judgeAnswer('www.example.com', ADDRESSES, session);
    expect(policy.answerCleared(handle, ADDRESSES)).toBe(true);
    policy.setLearnedDeny([], ['example.com']);
    expect(policy.reuse(handle, 1, 'interactive', state, undefined, 5000)).toBeUndefined();
    expect(policy.answerCleared(handle, ADDRESSES)).toBe(false);
    expect(policy.judge({ name: 'www.example.com', qtype: 1, session, state, ageDays: undefined, atMs: 5000 })).toMatchObject({ action: 'nxdomain', rule: 'learned_deny' });
  });

  it('gives nothing after the policy zones are reloaded', () => {
    const { policy, state, verdict, handle } = judged();
    expect(policy.reuse(handle, 1, 'interactive', state, undefined, 5000)).toBe(verdict);
    policy.setRpz(new RpzSet([]));
    expect(policy.reuse(handle, 1, 'interactive', state, undefined, 5000)).toBeUndefined();
  });

  it('gives nothing once the map of repeated names was full and started afresh', () => {
    const { policy, state, verdict, handle } = judged();
    expect(policy.reuse(handle, 1, 'interactive', state, undefined, 5000)).toBe(verdict);
    for (let i = 0; i < 8192; i++) {
      const input = { name: `h${i}.example.net`, qtype: 1, session, state, ageDays: undefined, atMs: 5000 };
      policy.judge(input);
      policy.judge(input); // a second sighting: a memo
    }
    expect(policy.reuse(handle, 1, 'interactive', state, undefined, 5000)).toBeUndefined();
  });

  it("never reads another policy's memo (a handle kept across a SIGHUP)", () => {
    const { policy, state, handle } = judged();
    policy.judgeAnswer('www.example.com', ADDRESSES, session);
    const reloaded = newPolicy();
    expect(reloaded.reuse(handle, 1, 'interactive', state, undefined, 5000)).toBeUndefined();
    expect(reloaded.answerCleared(handle, ADDRESSES)).toBe(false);
  });

  it('answerCleared: true only for the very address array its last check passed', () => {
    const { policy, handle } = judged();
    const outside = ['198.51.100.7'];
    expect(policy.answerCleared(handle, outside)).toBe(false); // not checked yet
    expect(policy.judgeAnswer('www.example.com', outside, session)).toBeUndefined();
    expect(policy.answerCleared(handle, outside)).toBe(true);
    expect(policy.answerCleared(handle, ['198.51.100.7'])).toBe(false); // equal, but another answer
    const inside = ['10.0.0.5'];
    expect(policy.judgeAnswer('www.example.com', inside, session)).toMatchObject({ rule: 'rebinding' });
    expect(policy.answerCleared(handle, inside)).toBe(false);
  });
});

describe('CachingResolver.slotFor: the entry a query would be answered from, looked at', () => {
  it('hands out the entry of a cached answer, whose judged slot the cache leaves alone', async () => {
    const upstream = new Upstream();
    const cache = new CachingResolver(upstream, cacheConfig(10), createMetrics(), () => 1_000_000);
    expect(cache.slotFor(query('a.example.com'))).toBeUndefined();
    expect(await cache.resolve(query('a.example.com'))).toMatchObject({ ok: true, via: 'upstream' });
    const slot = cache.slotFor(query('a.example.com'));
    expect(slot).toBeDefined();
    expect(slot!.judged).toBeUndefined();
    slot!.judged = 'kept';
    expect(cache.resolve(query('a.example.com'))).toMatchObject({ ok: true, via: 'cache' });
    expect(cache.slotFor(query('a.example.com'))!.judged).toBe('kept');
    expect(upstream.asked).toBe(1);
  });

  it('is not a use of the entry: the LRU order is what resolve() left', async () => {
    const upstream = new Upstream();
    const cache = new CachingResolver(upstream, cacheConfig(2), createMetrics(), () => 1_000_000);
    await cache.resolve(query('a.example.com'));
    await cache.resolve(query('b.example.com'));
    expect(cache.slotFor(query('a.example.com'))).toBeDefined(); // looked at, still the least recently used
    await cache.resolve(query('c.example.com')); // evicts a
    expect(cache.slotFor(query('a.example.com'))).toBeUndefined();
    expect(cache.slotFor(query('b.example.com'))).toBeDefined();
  });
});

describe('the pipeline on a cache hit', () => {
  function setup(maxEntries = 100) {
    const policy = newPolicy();
    let judged = 0;
    const judge = policy.judge.bind(policy);
    policy.judge = (input) => {
      judged++;
      return judge(input);
    };
    const sessions = new SessionDirectory<SessionState>({ newState: () => policy.newSessionState(), historyMax: 10, keys: new Map(), maxTtlSec: 0 });
    sessions.restore([{ id: 's1', user: 'u', role: 'r', type: 'interactive', addresses: ['127.0.0.1/32'], origin: 'registered', expiresAtMs: Infinity, registeredAtMs: 0 }], 0);
    const upstream = new Upstream();
    const clock = { ms: 1_000_000 };
    const metrics = createMetrics();
    const pipeline = createPipeline({
      sessions,
      quarantines: { holds: () => undefined, raise: () => { throw new Error('not raised here'); } },
      resolver: new CachingResolver(upstream, cacheConfig(maxEntries), metrics, () => clock.ms),
      policy: () => policy,
      judging: () => true,
      domainAge: undefined,
      ageBudgetMs: 0,
      metrics,
      log: createLogger('silent', new Writable({ write: (_c, _e, done) => done() })),
      nowMs: () => clock.ms,
      udpPayloadSize: 1232,
      repeatWindowMs: () => 1000,
    });
    return { policy, pipeline, upstream, clock, judged: () => judged };
  }

  it('a hit within the reuse time is answered on the verdict kept on its entry, without judging afresh', async () => {
    const t = setup();
    expect(await t.pipeline.handle(query('www.example.com', t.clock.ms))).toMatchObject({ kind: 'answered', via: 'upstream' });
    expect(await t.pipeline.handle(query('www.example.com', t.clock.ms))).toMatchObject({ kind: 'answered', via: 'cache' });
    expect(t.judged()).toBe(2); // the second sighting keeps the memo, on the entry too
    for (let i = 0; i < 5; i++) expect(t.pipeline.handle(query('www.example.com', t.clock.ms))).toMatchObject({ kind: 'answered', via: 'cache', verdict: { action: 'answer' } });
    expect(t.judged()).toBe(2);
    t.clock.ms += 1500; // past the reuse time: judged afresh once, then reused again
    t.pipeline.handle(query('www.example.com', t.clock.ms));
    t.pipeline.handle(query('www.example.com', t.clock.ms));
    expect(t.judged()).toBe(3);
    expect(t.upstream.asked).toBe(1);
  });

  it('a cached name denied by an analyst is blocked on its next hit, not answered from the kept verdict', async () => {
    const t = setup();
    await t.pipeline.handle(query('www.example.com', t.clock.ms));
    await t.pipeline.handle(query('www.example.com', t.clock.ms));
    expect(t.pipeline.handle(query('www.example.com', t.clock.ms))).toMatchObject({ kind: 'answered', via: 'cache' });
    t.policy.setLearnedDeny([], ['example.com']);
    expect(t.pipeline.handle(query('www.example.com', t.clock.ms))).toMatchObject({ kind: 'blocked', verdict: { rule: 'learned_deny', action: 'nxdomain' } });
  });

  it('a blocked query of a cached name does not keep its entry from eviction', async () => {
    const t = setup(2);
    await t.pipeline.handle(query('a.example.com', t.clock.ms));
    await t.pipeline.handle(query('b.example.org', t.clock.ms));
    t.policy.setLearnedDeny([], ['example.com']);
    expect(t.pipeline.handle(query('a.example.com', t.clock.ms))).toMatchObject({ kind: 'blocked', verdict: { rule: 'learned_deny' } });
    await t.pipeline.handle(query('c.example.net', t.clock.ms)); // evicts the least recently used: a, not b
    expect(t.upstream.asked).toBe(3);
    expect(t.pipeline.handle(query('b.example.org', t.clock.ms))).toMatchObject({ kind: 'answered', via: 'cache' });
    expect(t.upstream.asked).toBe(3);
  });

  it('a cached answer whose addresses point inside is blocked on every hit, not passed as checked', async () => {
    const t = setup();
    const inside: Resolution = { ok: true, reply: reply(['10.1.2.3']), via: 'upstream', ageSec: 0 };
    t.upstream.resolve = () => Promise.resolve(inside);
    for (let i = 0; i < 4; i++) expect(await t.pipeline.handle(query('www.example.com', t.clock.ms))).toMatchObject({ kind: 'blocked', verdict: { rule: 'rebinding' } });
  });
});
