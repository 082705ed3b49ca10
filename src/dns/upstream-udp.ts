// UDP exchanges with one upstream over a small, rotating set of sockets. Opening and closing a socket
// per query costs about a third of a cache miss in Node (handle, bind, connect, epoll, close), so a
// socket carries up to `queriesPerSocket` queries, at most MAX_INFLIGHT_PER_SOCKET at a time, and is
// then closed and replaced by a fresh one on a new kernel-chosen random port. What an off-path spoofer
// must guess per query stays a random 16-bit ID on a random port that changes every few dozen queries;
// any reply that matches nothing in flight retires its socket at once (a spray loses the port it
// found). queriesPerSocket = 1 is the strictest setting: a fresh socket, so a fresh port, per query.
import { createSocket, type Socket } from 'node:dgram';
import { randomFillSync } from 'node:crypto';
import { UpstreamTimeoutError, WardenError, messageOf } from '../errors.js';
import { literalLookup } from './literal-lookup.js';
import { decodeUpstreamReply, encodeUpstreamQuery, type Query, type Reply } from './wire.js';

/** A few queries share a port at once: a spoofer who learnt the port still hits one ID in 8,192. */
const MAX_INFLIGHT_PER_SOCKET = 8;
/** The EDNS UDP size we offer upstreams (over TCP too): the DNS Flag Day 2020 size, no fragmentation. */
export const UPSTREAM_UDP_SIZE = 1232;

export interface UdpTarget {
  readonly label: string;
  readonly host: string;
  readonly port: number;
  readonly family: 'udp4' | 'udp6';
}

interface Pending {
  readonly q: Query;
  readonly resolve: (r: Reply | WardenError) => void;
  readonly timer: NodeJS.Timeout;
}

/** Called for every reply that was not accepted (spoofed, late, for another question, malformed). */
export type RejectedReply = (err: WardenError) => void;

class PooledSocket {
  readonly pending = new Map<number, Pending>();
  uses = 0;
  retired = false;
  closed = false;

  constructor(readonly socket: Socket) {}
}

export class UdpExchange {
  readonly #target: UdpTarget;
  readonly #queriesPerSocket: number;
  readonly #maxTtlSec: number;
  readonly #onRejected: RejectedReply;
  /** Sockets that still take new queries; a retired socket leaves this list and closes once drained. */
  readonly #open: PooledSocket[] = [];
  readonly #all = new Set<PooledSocket>();
  #closed = false;

  /** `maxTtlSec`: the cap on every TTL in a reply (see decodeUpstreamReply). */
  constructor(target: UdpTarget, queriesPerSocket: number, maxTtlSec: number, onRejected: RejectedReply) {
    this.#target = target;
    this.#queriesPerSocket = queriesPerSocket;
    this.#maxTtlSec = maxTtlSec;
    this.#onRejected = onRejected;
  }

  /** One query, one reply (or the reason there is none); never throws, never rejects. */
  exchange(q: Query, timeoutMs: number): Promise<Reply | WardenError> {
    if (this.#closed) return Promise.resolve(new WardenError('ERR_UPSTREAM_NETWORK', `${this.#target.label}: resolver closed`));
    let pooled: PooledSocket;
    try {
      pooled = this.#pick();
    } catch (err) {
      return Promise.resolve(new WardenError('ERR_UPSTREAM_NETWORK', `${this.#target.label}: ${messageOf(err)}`, { cause: err }));
    }
    const id = freeId(pooled.pending);
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.#settle(pooled, id, new UpstreamTimeoutError(this.#target.label, timeoutMs)), timeoutMs);
      pooled.pending.set(id, { q, resolve, timer });
      try {
        pooled.socket.send(encodeUpstreamQuery(q, id, UPSTREAM_UDP_SIZE));
      } catch (err) {
        // A socket whose connect failed (no route: ENETUNREACH) is left unconnected, and send() then throws
        // (ERR_SOCKET_BAD_PORT). The connect error itself is emitted on the next tick, before this fallback
        // runs, and fails every query on the socket with the real reason; this only guarantees none waits.
        this.#retire(pooled);
        const fallback = new WardenError('ERR_UPSTREAM_NETWORK', `${this.#target.label}: ${messageOf(err)}`, { cause: err });
        process.nextTick(() => this.#fail(pooled, fallback));
        return;
      }
      // Retired after the send: it closes once this query (and any other in flight) is settled.
      if (++pooled.uses >= this.#queriesPerSocket) this.#retire(pooled);
    });
  }

  /** Closes every socket; queries still in flight end with a network error. */
  close(): void {
    this.#closed = true;
    for (const pooled of [...this.#all]) this.#fail(pooled, new WardenError('ERR_UPSTREAM_NETWORK', `${this.#target.label}: resolver closed`));
  }

  /** A random socket with room, or a fresh one while the set is small or full up. */
  #pick(): PooledSocket {
    const open = this.#open;
    if (open.length > 0) {
      const first = randomIndex(open.length);
      for (let i = 0; i < open.length; i++) {
        const candidate = open[(first + i) % open.length]!;
        if (candidate.pending.size < MAX_INFLIGHT_PER_SOCKET) return candidate;
      }
    }
    return this.#openSocket();
  }

  #openSocket(): PooledSocket {
    const socket = createSocket({ type: this.#target.family, lookup: literalLookup });
    const pooled = new PooledSocket(socket);
    socket.on('message', (msg: Buffer) => this.#onMessage(pooled, msg));
    // On a connected socket an ICMP "port unreachable" arrives here, and so does a connect that failed
    // (no route to the upstream): every query on it fails over now.
    socket.on('error', (err) => this.#fail(pooled, new WardenError('ERR_UPSTREAM_NETWORK', `${this.#target.label}: ${messageOf(err)}`, { cause: err })));
    // connect(): the kernel picks a random free source port, and only the upstream's address can deliver to it.
    // With a synchronous lookup bind and connect complete before the first send.
    socket.connect(this.#target.port, this.#target.host);
    socket.unref(); // in-flight queries hold the process through their timers, an idle socket does not
    this.#open.push(pooled);
    this.#all.add(pooled);
    return pooled;
  }

  #onMessage(pooled: PooledSocket, msg: Buffer): void {
    const id = msg.length >= 2 ? msg.readUInt16BE(0) : -1;
    const pending = pooled.pending.get(id);
    const reply = pending === undefined
      ? new WardenError('ERR_UPSTREAM_MISMATCH', 'upstream reply ID matches no query in flight')
      : decodeUpstreamReply(msg, pending.q, id, this.#maxTtlSec);
    if (reply instanceof WardenError) {
      // Spoofed, late or garbled: ignored (the query keeps waiting), counted, and this port is given up.
      this.#onRejected(reply);
      this.#retire(pooled);
      return;
    }
    this.#settle(pooled, id, reply);
  }

  #settle(pooled: PooledSocket, id: number, result: Reply | WardenError): void {
    const pending = pooled.pending.get(id);
    if (pending === undefined) return;
    pooled.pending.delete(id);
    clearTimeout(pending.timer);
    if (pooled.retired && pooled.pending.size === 0) this.#closeSocket(pooled);
    pending.resolve(result);
  }

  #retire(pooled: PooledSocket): void {
    if (!pooled.retired) {
      pooled.retired = true;
      const at = this.#open.indexOf(pooled);
      if (at >= 0) {
        this.#open[at] = this.#open[this.#open.length - 1]!;
        this.#open.pop();
      }
    }
    if (pooled.pending.size === 0) this.#closeSocket(pooled);
  }

  #fail(pooled: PooledSocket, err: WardenError): void {
    this.#retire(pooled);
    for (const id of [...pooled.pending.keys()]) this.#settle(pooled, id, err);
    this.#closeSocket(pooled);
  }

  #closeSocket(pooled: PooledSocket): void {
    if (pooled.closed) return;
    pooled.closed = true;
    this.#all.delete(pooled);
    pooled.socket.close();
  }
}

// Query IDs and socket choices come from the CSPRNG, drawn a few KB at a time (one call per query was measurable).
const randomPool = Buffer.alloc(4096);
let randomAt = randomPool.length;
function random16(): number {
  if (randomAt + 2 > randomPool.length) {
    randomFillSync(randomPool);
    randomAt = 0;
  }
  const value = randomPool.readUInt16BE(randomAt);
  randomAt += 2;
  return value;
}

/** A random ID not already in flight on this socket. */
function freeId(inFlight: ReadonlyMap<number, unknown>): number {
  for (;;) {
    const id = random16();
    if (!inFlight.has(id)) return id;
  }
}

function randomIndex(n: number): number {
  return n === 1 ? 0 : random16() % n;
}
