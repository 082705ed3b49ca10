// UDP and TCP listeners: the only code that reads or writes client sockets. RFC 7766 TCP: 2-byte
// length framing, pipelined queries answered as they finish (possibly out of order), an idle
// timeout, a deadline per frame, a connection cap (a registered source may evict an unregistered
// connection when it is reached), a per-source cap, and per-connection caps on queries in flight and
// unsent reply bytes. Each packet/frame is a crash boundary: a fault is counted and logged, never
// fatal. Knows nothing about DNS semantics (who is registered is a predicate it is given).
import { createSocket, type BindOptions, type Socket } from 'node:dgram';
import { createServer, type ListenOptions, type Server, type Socket as TcpSocket } from 'node:net';
import type { Logger } from 'pino';
import { splitHostPort } from '../ops/config.js';
import { messageOf } from '../errors.js';
import type { Metrics } from '../ops/telemetry.js';
import { literalLookup } from './literal-lookup.js';
import type { Peer, Transport } from './wire.js';

/** Answers one DNS message; undefined means "send nothing" (dropped). Synchronous when it can be (cache hits). */
export type PacketHandler = (packet: Buffer, peer: Peer) => Buffer | undefined | Promise<Buffer | undefined>;

/** Calls the handler inside the crash boundary: its reply (at hand or promised), or undefined after a fault. */
function callSafely(handler: PacketHandler, packet: Buffer, peer: Peer, fault: (err: unknown) => void): ReturnType<PacketHandler> {
  try {
    return handler(packet, peer);
  } catch (err) {
    fault(err);
    return undefined;
  }
}

export interface TransportOptions {
  readonly tcpIdleTimeoutMs: number;
  /** A frame must be complete this long after its first byte: a trickle of bytes cannot hold a slot. */
  readonly tcpFrameTimeoutMs: number;
  readonly tcpMaxConnections: number;
  /** One source address may hold at most this many: a neighbour cannot take every TCP slot. */
  readonly tcpMaxConnectionsPerSource: number;
  readonly tcpMaxInflightPerConnection: number;
  /** Sources with a live session: with the table full, their connections evict an unregistered one. */
  readonly isRegistered?: (address: string) => boolean;
}

/** One open client connection, as the connection table knows it. */
interface Conn {
  readonly socket: TcpSocket;
  readonly source: string;
  /** Last byte read or reply written (performance.now()): the least recent is evicted first. */
  lastActiveMs: number;
  /** Stop reading; answer what was received, then close our side (set by serveConnection). */
  drain?: () => void;
}

export interface DnsListener {
  readonly address: string;
  readonly port: number;
}

export interface DnsServer {
  readonly listeners: readonly DnsListener[];
  /**
   * Graceful: stops listening, reads no more, answers every TCP query already received and closes each
   * connection after its last answer; connections still open after `drainMs` (a client that never closes
   * its side) are destroyed. UDP stops at once (a datagram has no connection to finish).
   */
  close(drainMs?: number): Promise<void>;
  /** Abortive: every socket closed at once, answers in flight lost. */
  destroy(): void;
}

/** How long close() waits for TCP clients to take their last answers (a shutdown must end). */
const TCP_DRAIN_MS = 2_000;

const UDP_RECV_BUFFER = 4 * 1024 * 1024;
const BIND_ATTEMPTS = 8;

/** A worker's share of one sharded listen address (server.workers > 1): sockets the supervisor opened. */
export interface AdoptedListener {
  readonly port: number;
  readonly udpFd: number;
  readonly tcpFd: number;
}

export async function listenDns(
  addresses: readonly string[],
  handler: PacketHandler,
  opts: TransportOptions,
  metrics: Metrics,
  log: Logger,
  adopted?: readonly AdoptedListener[],
): Promise<DnsServer> {
  const udpSockets: Socket[] = [];
  const tcpServers: Server[] = [];
  const connections = new Map<TcpSocket, Conn>();
  const perSource = new Map<string, number>();
  const listeners: DnsListener[] = [];

  const fault = (transport: Transport, err: unknown): void => {
    metrics.transportFaults.inc({ transport });
    log.error({ err: messageOf(err), transport }, 'fault while answering a packet');
  };

  try {
    for (const [i, spec] of addresses.entries()) {
      const { host, port } = splitHostPort(spec)!;
      const adopt = adopted?.[i];
      if (adopt !== undefined) {
        udpSockets.push(await bindUdp(host, { fd: adopt.udpFd }, handler, fault));
        tcpServers.push(await listenTcp({ fd: adopt.tcpFd }, handler, opts, connections, perSource, fault, metrics));
        listeners.push({ address: host, port: adopt.port });
        continue;
      }
      // UDP and TCP share one port; with port 0 the kernel picks the UDP port and TCP must follow,
      // which can collide, so a pair is retried a few times.
      for (let attempt = 1; ; attempt++) {
        const udp = await bindUdp(host, { address: host, port, exclusive: true }, handler, fault);
        try {
          const tcp = await listenTcp({ host, port: udp.address().port, ipv6Only: host.includes(':') }, handler, opts, connections, perSource, fault, metrics);
          udpSockets.push(udp);
          tcpServers.push(tcp);
          listeners.push({ address: host, port: udp.address().port });
          break;
        } catch (err) {
          udp.close();
          if (port !== 0 || attempt >= BIND_ATTEMPTS) throw err;
        }
      }
    }
  } catch (err) {
    for (const s of udpSockets) s.close();
    for (const s of tcpServers) s.close();
    throw err;
  }

  return {
    listeners,
    async close(drainMs = TCP_DRAIN_MS) {
      for (const s of udpSockets) s.close();
      // server.close() stops accepting and calls back once every connection has closed.
      const closed = Promise.all(tcpServers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
      for (const conn of connections.values()) conn.drain?.();
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => { timer = setTimeout(resolve, drainMs, 'late'); });
      if ((await Promise.race([closed, late])) === 'late') {
        for (const socket of connections.keys()) socket.destroy();
        await closed;
      }
      clearTimeout(timer);
    },
    destroy() {
      for (const s of udpSockets) s.close();
      for (const s of tcpServers) s.close();
      for (const socket of connections.keys()) socket.destroy();
    },
  };
}

function bindUdp(host: string, where: BindOptions, handler: PacketHandler, fault: (t: Transport, e: unknown) => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', recvBufferSize: UDP_RECV_BUFFER, ipv6Only: host.includes(':'), lookup: literalLookup });
    socket.once('error', reject);
    const udpFault = (err: unknown): void => fault('udp', err);
    // A reply that finishes after close() (an upstream answered late during shutdown) has nowhere to go.
    let closed = false;
    socket.once('close', () => { closed = true; });
    socket.on('message', (packet, rinfo) => {
      const peer: Peer = { address: rinfo.address, port: rinfo.port, transport: 'udp' };
      // No per-send callback: a send error reaches the socket's 'error' handler (counted there).
      // A reply at hand (a cache hit) is sent at once; only a pending one needs a closure to come back to.
      const result = callSafely(handler, packet, peer, udpFault);
      if (result instanceof Promise) {
        result.then((reply) => { if (reply !== undefined && !closed) socket.send(reply, rinfo.port, rinfo.address); }).catch(udpFault);
      }
      else if (result !== undefined) socket.send(result, rinfo.port, rinfo.address);
    });
    socket.bind(where, () => {
      socket.off('error', reject);
      socket.on('error', (err) => fault('udp', err));
      resolve(socket);
    });
  });
}

function listenTcp(
  where: ListenOptions | { readonly fd: number },
  handler: PacketHandler,
  opts: TransportOptions,
  connections: Map<TcpSocket, Conn>,
  perSource: Map<string, number>,
  fault: (t: Transport, e: unknown) => void,
  metrics: Metrics,
): Promise<Server> {
  return new Promise((resolve, reject) => {
    // Idempotent: an evicted connection leaves the table at once, its 'close' comes later.
    const release = (socket: TcpSocket, source: string): void => {
      if (!connections.delete(socket)) return;
      const left = (perSource.get(source) ?? 1) - 1;
      if (left <= 0) perSource.delete(source);
      else perSource.set(source, left);
      metrics.tcpConnections.set(connections.size);
    };
    const server = createServer({ noDelay: true, highWaterMark: TCP_MAX_UNSENT_BYTES }, (socket) => {
      const source = socket.remoteAddress ?? '';
      const held = perSource.get(source) ?? 0;
      let admitted = held < opts.tcpMaxConnectionsPerSource;
      if (admitted && connections.size >= opts.tcpMaxConnections) {
        // A full table is no reason to turn away an agent with a session: an unregistered connection,
        // the least recently active, gives up its slot. An unregistered newcomer gets none.
        const victim = opts.isRegistered?.(source) === true ? leastRecentUnregistered(connections, opts.isRegistered) : undefined;
        if (victim === undefined) admitted = false;
        else {
          release(victim.socket, victim.source);
          victim.socket.destroy();
          metrics.tcpEvicted.inc();
        }
      }
      if (!admitted) {
        metrics.tcpRejected.inc();
        socket.destroy();
        return;
      }
      perSource.set(source, held + 1);
      const conn: Conn = { socket, source, lastActiveMs: performance.now() };
      connections.set(socket, conn);
      metrics.tcpConnections.set(connections.size);
      serveConnection(conn, handler, opts, fault, metrics);
      socket.on('close', () => release(socket, source));
    });
    server.once('error', reject);
    server.listen(where, () => {
      server.off('error', reject);
      server.on('error', (err) => fault('tcp', err));
      resolve(server);
    });
  });
}

// Replies not yet taken by the kernel beyond which a connection is read no further: a client that
// pipelines without reading its answers holds at most this much of our memory (plus one reply).
// It is the sockets' write high-water mark, so 'drain' is sure to follow once it is passed.
const TCP_MAX_UNSENT_BYTES = 16 * 1024;

/** The unregistered connection with the least recent activity (idle ones first), if any. */
function leastRecentUnregistered(connections: ReadonlyMap<TcpSocket, Conn>, isRegistered: (address: string) => boolean): Conn | undefined {
  let victim: Conn | undefined;
  for (const conn of connections.values()) {
    if ((victim === undefined || conn.lastActiveMs < victim.lastActiveMs) && !isRegistered(conn.source)) victim = conn;
  }
  return victim;
}

function serveConnection(conn: Conn, handler: PacketHandler, opts: TransportOptions, fault: (t: Transport, e: unknown) => void, metrics: Metrics): void {
  const socket = conn.socket;
  const peer: Peer = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0, transport: 'tcp' };
  let buffered: Buffer = Buffer.alloc(0);
  let inflight = 0;
  let ended = false;
  let closing = false;
  let pumping = false;
  let frameTimer: NodeJS.Timeout | undefined;

  // RFC 7766 §6.2.3: close idle connections; a connection with queries in flight is not idle.
  socket.setTimeout(opts.tcpIdleTimeoutMs, () => {
    if (inflight === 0) socket.destroy();
  });
  socket.on('error', () => socket.destroy()); // a reset by the client is not our fault
  socket.on('end', () => {
    ended = true;
    pump();
  });
  socket.on('drain', () => pump());
  socket.on('close', () => clearTimeout(frameTimer));

  const tcpFault = (err: unknown): void => fault('tcp', err);
  const answered = (reply: Buffer | undefined): void => {
    inflight--;
    if (reply !== undefined && !socket.destroyed) {
      const frame = Buffer.allocUnsafe(2 + reply.length);
      frame.writeUInt16BE(reply.length, 0);
      reply.copy(frame, 2);
      socket.write(frame);
      conn.lastActiveMs = performance.now();
    }
    pump();
  };

  // Answers the complete frames at hand while the connection is within its bounds (queries in flight,
  // unsent reply bytes); outside them it stops reading until a reply finishes or the kernel drains.
  // Synchronous answers (cache hits, REFUSED) count against the unsent bound like any other.
  function pump(): void {
    if (pumping || socket.destroyed) return;
    pumping = true;
    let answeredFrames = 0;
    try {
      while (buffered.length >= 2 && inflight < opts.tcpMaxInflightPerConnection && !socket.writableNeedDrain) {
        const length = buffered.readUInt16BE(0);
        if (buffered.length < 2 + length) break;
        const message = buffered.subarray(2, 2 + length);
        buffered = buffered.subarray(2 + length);
        answeredFrames++;
        inflight++;
        const result = callSafely(handler, message, peer, tcpFault);
        if (result instanceof Promise) result.then(answered, (err: unknown) => {
          tcpFault(err);
          answered(undefined);
        });
        else answered(result);
      }
    } finally {
      pumping = false;
    }
    if (socket.destroyed) return;
    const unsentOver = socket.writableNeedDrain;
    if (unsentOver || inflight >= opts.tcpMaxInflightPerConnection) {
      if (!socket.isPaused()) {
        socket.pause();
        if (unsentOver) metrics.tcpWritePaused.inc();
      }
    } else if (socket.isPaused() && !closing) {
      socket.resume();
    }
    // Any byte resets the idle timer, so a frame trickled in a byte at a time has a deadline of its own,
    // counted from when it is the one waiting to complete (its first byte, or the answer before it)
    // while we are reading: a pause of ours is not the client's delay.
    // A stream of pipelined frames often ends a chunk mid-frame: each completed frame restarts the clock.
    if (buffered.length > 0 && !hasFrame(buffered) && !socket.isPaused()) {
      if (frameTimer === undefined) {
        frameTimer = setTimeout(() => {
          if (socket.destroyed) return;
          metrics.tcpFrameTimeouts.inc();
          socket.destroy();
        }, opts.tcpFrameTimeoutMs);
      } else if (answeredFrames > 0) frameTimer.refresh();
    } else if (frameTimer !== undefined) {
      clearTimeout(frameTimer);
      frameTimer = undefined;
    }
    // A half-closed client gets every answer to what it sent before we close our side.
    if (ended && inflight === 0 && !hasFrame(buffered)) socket.end();
  }

  // The server is closing: what was received is answered (an unfinished frame is dropped), then our side closes.
  conn.drain = () => {
    closing = true;
    ended = true;
    socket.pause();
    if (frameTimer !== undefined) clearTimeout(frameTimer);
    buffered = hasFrame(buffered) ? buffered : Buffer.alloc(0);
    pump();
  };

  socket.on('data', (chunk: Buffer) => {
    if (closing) return; // bytes already in flight when we stopped reading
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    conn.lastActiveMs = performance.now();
    pump();
  });
}

function hasFrame(buffered: Buffer): boolean {
  return buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0);
}
