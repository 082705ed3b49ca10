// The terminal resolver: forwards a query to the configured upstreams. A fresh random ID and a
// fresh socket (so a random source port) per attempt; a reply counts only if it comes from the
// upstream's address and matches ID and question; TC → the same upstream over TCP; a per-upstream
// timeout then the next upstream, all within the total budget. Failure is a value, never a throw.
import { createSocket, type Socket } from 'node:dgram';
import { connect } from 'node:net';
import { randomInt } from 'node:crypto';
import { splitHostPort, type UpstreamConfig } from './config.js';
import { UpstreamTimeoutError, WardenError, messageOf } from './errors.js';
import type { Metrics } from './telemetry.js';
import { decodeUpstreamReply, encodeUpstreamQuery, type Query, type Reply } from './wire.js';

export type Resolution =
  | { readonly ok: true; readonly reply: Reply; readonly via: 'cache' | 'upstream'; readonly ageSec: number }
  | { readonly ok: false; readonly error: WardenError; /** RFC 8914: 22 No Reachable Authority, 23 Network Error */ readonly ede: 22 | 23 };

export interface Resolver {
  /** Synchronous when the answer is at hand (a cache hit), a promise when it has to be fetched. */
  resolve(q: Query): Resolution | Promise<Resolution>;
}

interface Upstream {
  readonly label: string;
  readonly host: string;
  readonly port: number;
  readonly family: 'udp4' | 'udp6';
  readonly timeoutMs: number;
  failedAtMs: number;
}

// An upstream that failed recently is tried last, so one dead upstream does not cost every query a timeout.
const DEMOTE_MS = 5000;
const UPSTREAM_UDP_SIZE = 1232;

export class UpstreamPool implements Resolver {
  readonly #upstreams: Upstream[];
  readonly #totalTimeoutMs: number;
  readonly #metrics: Metrics;
  readonly #nowMs: () => number;

  constructor(configs: readonly UpstreamConfig[], totalTimeoutMs: number, metrics: Metrics, nowMs: () => number) {
    this.#upstreams = configs.map((c) => {
      const { host, port } = splitHostPort(c.address)!;
      return { label: c.address, host, port, family: host.includes(':') ? 'udp6' : 'udp4', timeoutMs: c.timeout_ms, failedAtMs: -Infinity };
    });
    this.#totalTimeoutMs = totalTimeoutMs;
    this.#metrics = metrics;
    this.#nowMs = nowMs;
  }

  async resolve(q: Query): Promise<Resolution> {
    const started = this.#nowMs();
    const deadline = started + this.#totalTimeoutMs;
    const now = started;
    const order = [...this.#upstreams].sort((a, b) => Number(now - a.failedAtMs < DEMOTE_MS) - Number(now - b.failedAtMs < DEMOTE_MS));
    let sawNetworkError = false;
    let lastError: WardenError | undefined; // built only on failure: an Error captures a stack
    for (const upstream of order) {
      const remaining = deadline - this.#nowMs();
      if (remaining <= 0) break;
      const t0 = performance.now();
      const result = await this.#attempt(upstream, q, Math.min(upstream.timeoutMs, remaining));
      if (!(result instanceof WardenError)) {
        this.#metrics.upstreamDuration.observe({ upstream: upstream.label }, (performance.now() - t0) / 1000);
        return { ok: true, reply: result, via: 'upstream', ageSec: 0 };
      }
      upstream.failedAtMs = this.#nowMs();
      this.#metrics.upstreamFailures.inc({ upstream: upstream.label, reason: reasonOf(result) });
      if (result.code !== 'ERR_UPSTREAM_TIMEOUT') sawNetworkError = true;
      lastError = result;
    }
    const error = new WardenError('ERR_NO_UPSTREAM', `no upstream answered: ${lastError?.message ?? 'total_timeout_ms spent'}`, { cause: lastError });
    return { ok: false, error, ede: sawNetworkError ? 23 : 22 };
  }

  async #attempt(upstream: Upstream, q: Query, timeoutMs: number): Promise<Reply | WardenError> {
    const started = performance.now();
    const udp = await this.#viaUdp(upstream, q, timeoutMs);
    if (udp instanceof WardenError || !udp.tc) return udp;
    // Truncated: the whole answer comes over TCP (RFC 7766 §5), within what is left of this attempt.
    const left = Math.floor(timeoutMs - (performance.now() - started));
    if (left <= 0) return new UpstreamTimeoutError(`${upstream.label}/tcp`, timeoutMs);
    return this.#viaTcp(upstream, q, left);
  }

  #viaUdp(upstream: Upstream, q: Query, timeoutMs: number): Promise<Reply | WardenError> {
    return new Promise((resolve) => {
      const id = randomInt(0, 65_536);
      const socket: Socket = createSocket({ type: upstream.family, lookup: literalLookup });
      let done = false;
      const finish = (result: Reply | WardenError): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.close();
        resolve(result);
      };
      const timer = setTimeout(() => finish(new UpstreamTimeoutError(upstream.label, timeoutMs)), timeoutMs);
      socket.on('error', (err) => finish(new WardenError('ERR_UPSTREAM_NETWORK', `${upstream.label}: ${messageOf(err)}`, { cause: err })));
      socket.on('message', (msg) => {
        // A connected socket only receives from the upstream; anything that does not match is ignored
        // (a spoofed or late reply must not end the wait), and we keep waiting until the timeout.
        const reply = decodeUpstreamReply(msg, q, id);
        if (reply instanceof WardenError) {
          this.#metrics.upstreamFailures.inc({ upstream: upstream.label, reason: reasonOf(reply) });
          return;
        }
        finish(reply);
      });
      // connect() binds a fresh random source port and makes ICMP "port unreachable" an error we see at once.
      socket.connect(upstream.port, upstream.host, () => {
        if (!done) socket.send(encodeUpstreamQuery(q, id, UPSTREAM_UDP_SIZE));
      });
    });
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
        finish(decodeUpstreamReply(buffered.subarray(2, 2 + length), q, id));
      });
      socket.on('end', () => finish(new WardenError('ERR_UPSTREAM_NETWORK', `${upstream.label}/tcp closed before a reply`)));
    });
  }
}

/**
 * dgram's lookup for an address that is already an IP literal (upstreams are validated as such):
 * answers at once instead of going through dns.lookup for the bind and again for the connect.
 */
function literalLookup(address: string, _family: unknown, callback: (err: Error | null, address: string, family: number) => void): void {
  callback(null, address, address.includes(':') ? 6 : 4);
}

function reasonOf(err: WardenError): string {
  switch (err.code) {
    case 'ERR_UPSTREAM_TIMEOUT': return 'timeout';
    case 'ERR_UPSTREAM_MISMATCH': return 'mismatch';
    case 'ERR_WIRE_FORMAT': return 'malformed';
    default: return 'network';
  }
}
