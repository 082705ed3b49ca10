// src/replay/harness.ts — the server's own query path (createPipeline from src/pipeline.ts) built on in-memory
// dependencies, so a logged query is decided by exactly the code that decides a live one: admit, gate, judge,
// enforce, resolve, finish. Owns those stand-ins: one session per replayed session id (an address of its own in
// fd00::/64), a quarantine gate in a Map, a resolver that answers with the logged rcode (an upstream failure for a
// row the query log says failed) and simulates the cache by the lines' own times, the line's time as the clock,
// its `age_days` as the domain's age, a fresh metrics registry and a silent logger.
// Never opens a socket, reads the clock or a file, writes a store, or logs.
import { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { WardenError } from '../errors.js';
import { createLogger, createMetrics } from '../ops/telemetry.js';
import type { Query, Reply } from '../dns/wire.js';
import type { Resolution, Resolver } from '../dns/upstream.js';
import { SessionDirectory, type Session, type SessionMeta } from '../sessions/directory.js';
import type { Policy, SessionState, SessionType, Verdict } from '../policy/judge.js';
import type { ReplayLine } from '../policy/replay-lines.js';
import type { Outcome } from '../outcome/outcome.js';
import { createPipeline, type DomainAgeLookup, type PipelineDeps, type QuarantineGate } from '../pipeline.js';

export interface HarnessOptions {
  /** A (name, qtype) forwarded within this long is a cache hit and does not leave again. Default 60 s. */
  readonly cacheTtlMs?: number;
  /** The type of a session whose lines do not say (`session_type`). Default interactive. */
  readonly sessionType?: SessionType;
}

/** What the pipeline asks of its quarantine book: the gate (`holds`) and closing it (`raise`). */

const CLASS_IN = 1;
const NO_QUESTION = Buffer.alloc(0);
const NO_ADDRESSES: readonly string[] = Object.freeze([]);

/** A reply with the logged rcode and nothing in it (replay has no records, so the rebinding check has nothing to see). */
function emptyReply(rcode: number): Reply {
  return { rcode, flags: 0x8180 | rcode, tc: false, answerCount: 0, authorityCount: 0, additionalCount: 0, body: '', ttlOffsets: '', edeOptions: '', cacheTtlSec: undefined, addresses: NO_ADDRESSES, strippedRecords: 0 };
}

/** A log line's session, as the pipeline admits it: its address, and the session the directory holds for it. */
interface Replayed {
  readonly peer: Query['peer'];
  readonly session: Session<SessionState>;
}

export interface ReplayHarness {
  /** Decides one line through the pipeline (a promise while the line's domain age is "looked up"). */
  feed(line: ReplayLine, name: string): Outcome | Promise<Outcome>;
  /** The session a line's `session` names (its window, as the pipeline left it), once fed. */
  session(id: string): Session<SessionState> | undefined;
  close(): void;
}

/**
 * The pipeline over in-memory stand-ins for one policy. Lines must be fed one at a time: a line's answer and
 * domain age are read while it is decided (so a promise from `feed` must settle before the next line).
 */
export function createReplayHarness(policy: Policy, options: HarnessOptions = {}): ReplayHarness {
  const cacheTtlMs = options.cacheTtlMs ?? 60_000;
  const defaultType = options.sessionType ?? 'interactive';
  let line: ReplayLine | undefined; // the line being decided: the clock, the domain age and the upstream's answer
  let latestTs = -Infinity;

  const sessions = new SessionDirectory<SessionState>({ newState: () => policy.newSessionState(), historyMax: 0, keys: new Map(), maxTtlSec: 0 });
  const replayed = new Map<string, Replayed>();
  function replayedOf(l: ReplayLine): Replayed {
    let r = replayed.get(l.session);
    if (r !== undefined) return r;
    const n = replayed.size + 1;
    const address = `fd00::${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
    const meta: SessionMeta = { id: l.session, user: 'replay', role: 'replay', type: l.session_type ?? defaultType, addresses: [`${address}/128`], origin: 'registered', expiresAtMs: Infinity, registeredAtMs: 0 };
    sessions.restore([meta], 0);
    r = { peer: { address, port: 0, transport: 'udp' }, session: sessions.get(l.session)! };
    replayed.set(l.session, r);
    return r;
  }

  // The gate: session id → quarantine id. Nothing is stored, alerted or shared (a replay decides, it never acts).
  const held = new Map<string, string>();
  const quarantines: QuarantineGate = {
    holds: (sessionId) => held.get(sessionId),
    raise(session, verdict: Verdict, q, eventId) {
      const id = held.get(session.id) ?? `qr-${eventId}`;
      held.set(session.id, id);
      const { state: _state, history: _history, ...meta } = session as Session<unknown>;
      return {
        id, sessionId: session.id, session: meta, state: 'open', raisedAtMs: q.atMs,
        evidence: { trigger: { eventId, atMs: q.atMs, name: q.name, qtype: q.type, action: verdict.action, rule: verdict.rule, reason: verdict.reason, score: verdict.score?.total }, recent: [] },
      };
    },
  };

  // The upstream: the logged rcode (NOERROR when the line has none), a failure for a row the query log says failed;
  // a (qtype, name) forwarded within the cache TTL, by the lines' own times, is a cache hit and leaves nothing new.
  // One resolution per (rcode, cache or upstream), made once: ageSec only sets the TTLs of a reply replay never encodes.
  const resolutions = new Map<number, { readonly cache: Resolution; readonly upstream: Resolution }>();
  const cache = new Map<string, number>(); // `qtype/name` → ts last forwarded, oldest first, so expiry is from the front
  const resolver: Resolver = {
    resolve(q: Query): Resolution | Promise<Resolution> {
      // a promise: the failed query went out (what the server counts), though no answer came
      if (line?.result === 'failed') return Promise.resolve({ ok: false, ede: 22, error: new WardenError('ERR_NO_UPSTREAM', 'the upstream failed (as logged)') });
      const rcode = line?.rcode ?? 0;
      let r = resolutions.get(rcode);
      if (r === undefined) {
        const reply = emptyReply(rcode);
        resolutions.set(rcode, (r = { cache: { ok: true, via: 'cache', reply, ageSec: 0 }, upstream: { ok: true, via: 'upstream', reply, ageSec: 0 } }));
      }
      const key = `${q.type}/${q.name}`;
      const last = cache.get(key);
      if (last !== undefined && q.atMs - last < cacheTtlMs) return r.cache;
      cache.delete(key);
      cache.set(key, q.atMs);
      if (cache.size % 4096 === 0) expireCache();
      return r.upstream;
    },
  };
  function expireCache(): void {
    const cutoff = latestTs - cacheTtlMs;
    for (const [key, ts] of cache) {
      if (ts > cutoff) break;
      cache.delete(key);
    }
  }

  // The domain's age is the line's (`age_days`); a line without one is judged as the server judges a domain of
  // unknown age. The getter keeps a line without an age synchronous, as a server without domain_age is.
  const ages: DomainAgeLookup = { lookup: () => Promise.resolve(line?.age_days) };
  const log: Logger = createLogger('silent', new Writable({ write: (_chunk, _encoding, done) => done() }));
  const nowMs = (): number => line?.ts ?? 0;
  const deps: PipelineDeps = {
    sessions,
    quarantines,
    resolver,
    policy: () => policy,
    judging: () => true,
    get domainAge() {
      return line?.age_days === undefined ? undefined : ages;
    },
    ageBudgetMs: 0,
    metrics: createMetrics(),
    log,
    nowMs,
    udpPayloadSize: 1232,
    repeatWindowMs: () => 0,
  };
  const pipeline = createPipeline(deps);

  return {
    feed(l, name) {
      line = l;
      if (l.ts > latestTs) latestTs = l.ts;
      const r = replayedOf(l);
      const q: Query = { id: 0, name, type: l.qtype, class: CLASS_IN, rd: true, cd: false, question: NO_QUESTION, edns: undefined, maxReplyBytes: 65_535, peer: r.peer, atMs: l.ts };
      return pipeline.handle(q);
    },
    session: (id) => replayed.get(id)?.session,
    close: () => undefined,
  };
}
