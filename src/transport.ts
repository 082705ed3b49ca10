// UDP and TCP listeners: the only code that reads or writes client sockets. RFC 7766 TCP: 2-byte
// length framing, pipelined queries answered as they finish (possibly out of order), an idle
// timeout, a connection cap and a per-connection in-flight cap. Each packet/frame is a crash
// boundary: a fault is counted and logged, never fatal. Knows nothing about DNS semantics.
import { createSocket, type BindOptions, type Socket } from 'node:dgram';
import { createServer, type ListenOptions, type Server, type Socket as TcpSocket } from 'node:net';
import type { Logger } from 'pino';
import { splitHostPort } from './config.js';
import { messageOf } from './errors.js';
import type { Metrics } from './telemetry.js';
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
  readonly tcpMaxConnections: number;
  /** One source address may hold at most this many: a neighbour cannot take every TCP slot. */
  readonly tcpMaxConnectionsPerSource: number;
  readonly tcpMaxInflightPerConnection: number;
}

export interface DnsListener {
  readonly address: string;
  readonly port: number;
}

export interface DnsServer {
  readonly listeners: readonly DnsListener[];
  close(): Promise<void>;
}

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
  const connections = new Set<TcpSocket>();
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
    async close() {
      for (const s of udpSockets) s.close();
      await Promise.all(tcpServers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))).concat(
        [...connections].map(async (c) => { c.destroy(); }),
      ));
    },
  };
}

function bindUdp(host: string, where: BindOptions, handler: PacketHandler, fault: (t: Transport, e: unknown) => void): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket({ type: host.includes(':') ? 'udp6' : 'udp4', recvBufferSize: UDP_RECV_BUFFER, ipv6Only: host.includes(':'), lookup: literalLookup });
    socket.once('error', reject);
    const udpFault = (err: unknown): void => fault('udp', err);
    socket.on('message', (packet, rinfo) => {
      const peer: Peer = { address: rinfo.address, port: rinfo.port, transport: 'udp' };
      // No per-send callback: a send error reaches the socket's 'error' handler (counted there).
      // A reply at hand (a cache hit) is sent at once; only a pending one needs a closure to come back to.
      const result = callSafely(handler, packet, peer, udpFault);
      if (result instanceof Promise) result.then((reply) => { if (reply !== undefined) socket.send(reply, rinfo.port, rinfo.address); }, udpFault);
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
  connections: Set<TcpSocket>,
  perSource: Map<string, number>,
  fault: (t: Transport, e: unknown) => void,
  metrics: Metrics,
): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer({ noDelay: true }, (socket) => {
      const source = socket.remoteAddress ?? '';
      const held = perSource.get(source) ?? 0;
      if (connections.size >= opts.tcpMaxConnections || held >= opts.tcpMaxConnectionsPerSource) {
        metrics.tcpRejected.inc();
        socket.destroy();
        return;
      }
      perSource.set(source, held + 1);
      connections.add(socket);
      metrics.tcpConnections.set(connections.size);
      serveConnection(socket, handler, opts, fault, metrics);
      socket.on('close', () => {
        connections.delete(socket);
        const left = (perSource.get(source) ?? 1) - 1;
        if (left <= 0) perSource.delete(source);
        else perSource.set(source, left);
        metrics.tcpConnections.set(connections.size);
      });
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
export const TCP_MAX_UNSENT_BYTES = 16 * 1024;

function serveConnection(socket: TcpSocket, handler: PacketHandler, opts: TransportOptions, fault: (t: Transport, e: unknown) => void, metrics: Metrics): void {
  const peer: Peer = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0, transport: 'tcp' };
  let buffered: Buffer = Buffer.alloc(0);
  let inflight = 0;
  let ended = false;
  let pumping = false;

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

  const tcpFault = (err: unknown): void => fault('tcp', err);
  const answered = (reply: Buffer | undefined): void => {
    inflight--;
    if (reply !== undefined && !socket.destroyed) {
      const frame = Buffer.allocUnsafe(2 + reply.length);
      frame.writeUInt16BE(reply.length, 0);
      reply.copy(frame, 2);
      socket.write(frame);
    }
    pump();
  };

  // Answers the complete frames at hand while the connection is within its bounds (queries in flight,
  // unsent reply bytes); outside them it stops reading until a reply finishes or the kernel drains.
  // Synchronous answers (cache hits, REFUSED) count against the unsent bound like any other.
  function pump(): void {
    if (pumping || socket.destroyed) return;
    pumping = true;
    try {
      while (buffered.length >= 2 && inflight < opts.tcpMaxInflightPerConnection && socket.writableLength <= TCP_MAX_UNSENT_BYTES) {
        const length = buffered.readUInt16BE(0);
        if (buffered.length < 2 + length) break;
        const message = buffered.subarray(2, 2 + length);
        buffered = buffered.subarray(2 + length);
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
    const unsentOver = socket.writableLength > TCP_MAX_UNSENT_BYTES;
    if (unsentOver || inflight >= opts.tcpMaxInflightPerConnection) {
      if (!socket.isPaused()) {
        socket.pause();
        if (unsentOver) metrics.tcpWritePaused.inc();
      }
    } else if (socket.isPaused()) {
      socket.resume();
    }
    // A half-closed client gets every answer to what it sent before we close our side.
    if (ended && inflight === 0 && !hasFrame(buffered)) socket.end();
  }

  socket.on('data', (chunk: Buffer) => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    pump();
  });
}

function hasFrame(buffered: Buffer): boolean {
  return buffered.length >= 2 && buffered.length >= 2 + buffered.readUInt16BE(0);
}
