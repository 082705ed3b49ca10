// The quarantine gate and the domain-age wait (src/pipeline.ts): a query that waits for its domain's age must be
// gated if the session was quarantined meanwhile, never judged and answered as if the session were free. The
// pipeline on stand-ins (as replay builds it): the age lookup is a promise the test resolves, the gate a Map.
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createPipeline } from '../../src/pipeline.js';
import { SessionDirectory } from '../../src/sessions/directory.js';
import { Policy, type SessionState } from '../../src/policy/judge.js';
import { policySchema, scoringSchema } from '../../src/policy/schema.js';
import { createLogger, createMetrics } from '../../src/ops/telemetry.js';
import type { Query } from '../../src/dns/wire.js';
import type { Resolution } from '../../src/dns/upstream.js';

function setup() {
  const policy = new Policy(policySchema.parse({}), scoringSchema.parse({}));
  const sessions = new SessionDirectory<SessionState>({ newState: () => policy.newSessionState(), historyMax: 10, keys: new Map(), maxTtlSec: 0 });
  sessions.restore([{ id: 's1', user: 'u', role: 'r', type: 'interactive', addresses: ['127.0.0.1/32'], origin: 'registered', expiresAtMs: Infinity, registeredAtMs: 0 }], 0);
  const held = new Map<string, string>();
  let resolveAge: (days: number | undefined) => void = () => undefined;
  let resolved = 0;
  const answer: Resolution = { ok: true, via: 'upstream', ageSec: 0, reply: { rcode: 0, flags: 0x8180, tc: false, answerCount: 0, authorityCount: 0, additionalCount: 0, body: '', ttlOffsets: '', edeOptions: '', cacheTtlSec: 60, addresses: [], strippedRecords: 0 } };
  const pipeline = createPipeline({
    sessions,
    quarantines: { holds: (id) => held.get(id), raise: () => { throw new Error('not raised here'); } },
    resolver: { resolve: () => { resolved++; return answer; } },
    policy: () => policy,
    judging: () => true,
    domainAge: { lookup: () => new Promise<number | undefined>((ok) => { resolveAge = ok; }) },
    ageBudgetMs: 100,
    metrics: createMetrics(),
    log: createLogger('silent', new Writable({ write: (_c, _e, done) => done() })),
    nowMs: () => 1000,
    udpPayloadSize: 1232,
    repeatWindowMs: () => 1000,
  });
  const q: Query = { id: 1, name: 'www.example.com', type: 1, class: 1, rd: true, cd: false, question: Buffer.alloc(0), edns: undefined, maxReplyBytes: 1232, peer: { address: '127.0.0.1', port: 1, transport: 'udp' }, atMs: 1000 };
  return { pipeline, held, q, age: (days: number | undefined) => resolveAge(days), resolved: () => resolved };
}

describe('the quarantine gate around the domain-age wait', () => {
  it('a query quarantined while it waited for its age is gated, not judged nor resolved', async () => {
    const t = setup();
    const pending = t.pipeline.handle(t.q);
    expect(pending).toBeInstanceOf(Promise);
    t.held.set('s1', 'qr-1'); // another query of the session quarantined it meanwhile
    t.age(9000);
    const outcome = await pending;
    expect(outcome).toMatchObject({ kind: 'blocked', eventId: 'qr-1', verdict: { rule: 'quarantined' } });
    expect(t.resolved()).toBe(0);
  });

  it('without a quarantine meanwhile, the waited query is judged and resolved', async () => {
    const t = setup();
    const pending = t.pipeline.handle(t.q);
    t.age(9000);
    expect(await pending).toMatchObject({ kind: 'answered' });
    expect(t.resolved()).toBe(1);
  });
});
