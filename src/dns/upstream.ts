// The terminal resolver: forwards a query to the configured upstreams. A random ID per attempt on a
// random source port that rotates (see upstream-udp.ts); a reply counts only if it comes from the
// upstream's address and matches ID and question; TC → the same upstream over TCP (a fresh connection),
// where TC again is a failure of that upstream;
// a per-upstream timeout then the next upstream, all within the total budget. Failure is a value, never a throw.
import { connect } from 'node:net';
import { randomInt } from 'node:crypto';
import { splitHostPort, type UpstreamConfig } from '../ops/config.js';
import { UpstreamTimeoutError, WardenError, messageOf } from '../errors.js';
import { UPSTREAM_FAILURE_REASONS, type Metrics } from '../ops/telemetry.js';
import { UPSTREAM_UDP_SIZE, UdpExchange } from './upstream-udp.js';
import { decodeUpstreamReply, encodeUpstreamQuery, type Query, type Reply } from './wire.js';

export type Resolution =
  | { readonly ok: true; readonly reply: Reply; readonly via: 'cache' | 'upstream'; readonly ageSec: number; /** Set: an expired answer served stale (RFC 8767) with every TTL this. */ readonly staleTtlSec?: number }
  | { readonly ok: false; readonly error: WardenError; /** RFC 8914: 22 No Reachable Authority, 23 Network Error */ readonly ede: 22 | 23 };

export interface Resolver {
  /**
   * Synchronous when the answer is at hand (a cache hit), a promise when it has to be fetched: the pipeline counts a
   * promise (or an answer that says `via: 'upstream'`) as a query that went out.
   */
  resolve(q: Query): Resolution | Promise<Resolution>;
}

interface Upstream {
  readonly label: string;
  readonly host: string;
  readonly port: number;
  readonly family: 'udp4' | 'udp6';
  readonly timeoutMs: number;
  readonly udp: UdpExchange;
  failedAtMs: number;
  /** The outcome of the latest finished attempt: undefined before the first, else null (ok) or why it failed. */
  latest: string | null | undefined;
}

// An upstream that failed recently is tried last, so one dead upstream does not cost every query a timeout.
const DEMOTE_MS = 5000;

export class UpstreamPool implements Resolver {
  readonly #upstreams: Upstream[];
  readonly #totalTimeoutMs: number;
  readonly #maxTtlSec: number;
  readonly #metrics: Metrics;
  readonly #nowMs: () => number;

  /** `maxTtlSec`: TTLs in upstream replies are capped at this (the cache's max TTL) before anyone sees them. */
  constructor(configs: readonly UpstreamConfig[], totalTimeoutMs: number, queriesPerSocket: number, maxTtlSec: number, metrics: Metrics, nowMs: () => number) {
    this.#upstreams = configs.map((c) => {
      const { host, port } = splitHostPort(c.address)!;
      const target = { label: c.address, host, port, family: host.includes(':') ? 'udp6' as const : 'udp4' as const };
      const udp = new UdpExchange(target, queriesPerSocket, maxTtlSec, (err) => metrics.upstreamFailures.inc({ upstream: c.address, reason: reasonOf(err) }));
      // Every series of this upstream from the start (see telemetry.ts: the first failure must be a rise).
      for (const reason of UPSTREAM_FAILURE_REASONS) metrics.upstreamFailures.inc({ upstream: c.address, reason }, 0);
      metrics.upstreamDuration.declare(c.address);
      return { ...target, timeoutMs: c.timeout_ms, udp, failedAtMs: -Infinity, latest: undefined };
    });
    this.#totalTimeoutMs = totalTimeoutMs;
    this.#maxTtlSec = maxTtlSec;
    this.#metrics = metrics;
    this.#nowMs = nowMs;
  }

  async resolve(q: Query): Promise<Resolution> {
    const now = this.#nowMs();
    const deadline = now + this.#totalTimeoutMs;
    const demoted = (u: Upstream): boolean => now - u.failedAtMs < DEMOTE_MS;
    // Configured order unless one failed lately (then it goes last): no copy or sort while all are well.
    const order = this.#upstreams.some(demoted) ? [...this.#upstreams].sort((a, b) => Number(demoted(a)) - Number(demoted(b))) : this.#upstreams;
    let sawNetworkError = false;
    let lastError: WardenError | undefined; // built only on failure: an Error captures a stack
    for (const upstream of order) {
      const remaining = deadline - this.#nowMs();
      if (remaining <= 0) break;
      const t0 = performance.now();
      const result = await this.#attempt(upstream, q, Math.min(upstream.timeoutMs, remaining));
      if (!(result instanceof WardenError)) {
        upstream.latest = null;
        this.#metrics.upstreamDuration.observe(upstream.label, (performance.now() - t0) / 1000);
        if (result.strippedRecords > 0) this.#metrics.upstreamStripped.inc({ upstream: upstream.label }, result.strippedRecords);
        return { ok: true, reply: result, via: 'upstream', ageSec: 0 };
      }
      upstream.failedAtMs = this.#nowMs();
      upstream.latest = reasonOf(result);
      this.#metrics.upstreamFailures.inc({ upstream: upstream.label, reason: reasonOf(result) });
      if (result.code !== 'ERR_UPSTREAM_TIMEOUT') sawNetworkError = true;
      lastError = result;
    }
    const error = new WardenError('ERR_NO_UPSTREAM', `no upstream answered: ${lastError?.message ?? 'total_timeout_ms spent'}`, { cause: lastError });
    return { ok: false, error, ede: sawNetworkError ? 23 : 22 };
  }

  /**
   * For readiness: why no upstream can be expected to answer (the latest attempt to every one of them
   * failed, whatever they answered before), or null while at least one's latest attempt succeeded or
   * one has not been tried yet.
   */
  unreachable(): string | null {
    if (this.#upstreams.some((u) => typeof u.latest !== 'string')) return null;
    // No addresses: /readyz is open, and agents are not told where the upstreams are.
    return `the latest attempt to every upstream failed (${this.#upstreams.length}: ${[...new Set(this.#upstreams.map((u) => u.latest))].join(', ')})`;
  }

  /**
   * Asks every upstream whose latest attempt failed for the root SOA (any reply counts, even REFUSED),
   * so readiness recovers without client traffic: a pod taken out of its Service gets no queries.
   * Not counted in the query metrics: these are not agents' queries.
   */
  async recheck(): Promise<void> {
    await Promise.all(this.#upstreams.filter((u) => typeof u.latest === 'string').map(async (u) => {
      const result = await this.#attempt(u, rootSoaQuery(this.#nowMs()), u.timeoutMs);
      u.latest = result instanceof WardenError ? reasonOf(result) : null;
    }));
  }

  /** Closes the upstream sockets; queries in flight end with a network error. */
  close(): void {
    for (const upstream of this.#upstreams) upstream.udp.close();
  }

  async #attempt(upstream: Upstream, q: Query, timeoutMs: number): Promise<Reply | WardenError> {
    const started = performance.now();
    const udp = await upstream.udp.exchange(q, timeoutMs);
    if (udp instanceof WardenError || !udp.tc) return udp;
    // Truncated: the whole answer comes over TCP (RFC 7766 §5), within what is left of this attempt.
    const left = Math.floor(timeoutMs - (performance.now() - started));
    if (left <= 0) return new UpstreamTimeoutError(`${upstream.label}/tcp`, timeoutMs);
    return this.#viaTcp(upstream, q, left);
  }

  #viaTcp(upstream: Upstream, q: Query, timeoutMs: number): Promise<Reply | WardenError> {
    return new Promise((resolve) => {
      const id = randomInt(0, 65_536);
      const socket = connect({ host: upstream.host, port: upstream.port });
      let done = false;
      let buffered = Buffer.alloc(0);
      const finish = (result: Reply | WardenError): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.destroy();
        resolve(result);
      };
      const timer = setTimeout(() => finish(new UpstreamTimeoutError(`${upstream.label}/tcp`, timeoutMs)), timeoutMs);
      socket.on('error', (err) => finish(new WardenError('ERR_UPSTREAM_NETWORK', `${upstream.label}/tcp: ${messageOf(err)}`, { cause: err })));
      socket.on('connect', () => {
        const query = encodeUpstreamQuery(q, id, UPSTREAM_UDP_SIZE);
        const frame = Buffer.alloc(2 + query.length);
        frame.writeUInt16BE(query.length, 0);
        query.copy(frame, 2);
        socket.write(frame);
      });
      socket.on('data', (chunk) => {
        buffered = Buffer.concat([buffered, chunk]);
        if (buffered.length < 2) return;
        const length = buffered.readUInt16BE(0);
        if (buffered.length < 2 + length) return;
        const reply = decodeUpstreamReply(buffered.subarray(2, 2 + length), q, id, this.#maxTtlSec);
        // TC=1 over TCP has no larger transport to retry on (RFC 7766 §6.2.1): that upstream failed, and the
        // client, which must never see TC=1 over TCP, gets the next upstream's answer or SERVFAIL + EDE.
        if (!(reply instanceof WardenError) && reply.tc) finish(new WardenError('ERR_WIRE_FORMAT', `${upstream.label}/tcp: truncated reply over TCP`));
        else finish(reply);
      });
      socket.on('end', () => finish(new WardenError('ERR_UPSTREAM_NETWORK', `${upstream.label}/tcp closed before a reply`)));
    });
  }
}

/** `. IN SOA`, the query readiness rechecks send (every resolver can answer it, or refuse it). */
function rootSoaQuery(atMs: number): Query {
  return {
    id: 0, name: '', type: 6, class: 1, rd: true, cd: false, question: Buffer.from([0, 0, 6, 0, 1]),
    edns: undefined, maxReplyBytes: UPSTREAM_UDP_SIZE, peer: { address: '127.0.0.1', port: 0, transport: 'udp' }, atMs,
  };
}

function reasonOf(err: WardenError): string {
  switch (err.code) {
    case 'ERR_UPSTREAM_TIMEOUT': return 'timeout';
    case 'ERR_UPSTREAM_MISMATCH': return 'mismatch';
    case 'ERR_WIRE_FORMAT': return 'malformed';
    default: return 'network';
  }
}
