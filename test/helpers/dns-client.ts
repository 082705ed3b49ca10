// The tests' DNS client: encodes queries and decodes replies with dns2 (a different codec from the
// server's dns-packet wrapper, on purpose: a codec bug cannot cancel itself out), over our own
// UDP/TCP sockets so a test can pick the source address, EDNS size, DO bit and timeout, pipeline
// on one TCP connection, and send raw bytes. Owns no server; never retries behind the test's back.
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { connect, isIPv6, type Socket as TcpSocket } from 'node:net';
import dns2 from 'dns2';

const { Packet } = dns2;

export type Transport = 'udp' | 'tcp';
export type Rcode = 'NOERROR' | 'FORMERR' | 'SERVFAIL' | 'NXDOMAIN' | 'NOTIMP' | 'REFUSED' | `RCODE${number}`;

const RCODE_NAMES: Readonly<Record<number, Rcode>> = { 0: 'NOERROR', 1: 'FORMERR', 2: 'SERVFAIL', 3: 'NXDOMAIN', 4: 'NOTIMP', 5: 'REFUSED' };

/** QTYPE numbers by name (dns2's table plus a few it lacks). */
export const QTYPE: Readonly<Record<string, number>> = { ...Packet.TYPE, NULL: 10, SVCB: 64, HTTPS: 65, OPT: 41 } as Record<string, number>;

export interface Server {
  readonly address: string;
  readonly port: number;
}

export interface Edns {
  /** Requestor's UDP payload size (OPT CLASS). Default 1232. */
  readonly udpSize?: number;
  /** DNSSEC OK bit. Default false. */
  readonly do?: boolean;
}

export interface QueryOptions {
  readonly server: Server;
  readonly name: string;
  /** 'A', 'AAAA', 'TXT', … or a QTYPE number. */
  readonly type: string | number;
  readonly transport?: Transport;
  /** EDNS0 OPT in the query; `false` sends none (plain RFC 1035, 512-byte UDP limit). Default { udpSize: 1232 }. */
  readonly edns?: Edns | false;
  /** Source address to bind (e.g. '127.0.0.2' for "an address with no session"). */
  readonly bind?: string;
  readonly timeoutMs?: number;
  /** Query ID; default random. */
  readonly id?: number;
  /** RD bit; default true. */
  readonly rd?: boolean;
  /** QCLASS; default IN (1). */
  readonly qclass?: number;
}

export interface Record_ {
  readonly name: string;
  readonly type: string;
  readonly class: number;
  readonly ttl: number;
  /** A/AAAA: address; CNAME/NS/PTR: target name; TXT: string[]; MX: { preference, exchange }; SOA: fields; else raw hex. */
  readonly data: unknown;
}

export interface SoaData {
  readonly mname: string;
  readonly rname: string;
  readonly serial: number;
  readonly refresh: number;
  readonly retry: number;
  readonly expire: number;
  readonly minimum: number;
}

export interface Ede {
  readonly code: number;
  readonly text: string;
}

export interface DnsReply {
  readonly id: number;
  readonly rcode: Rcode;
  readonly rcodeNumber: number;
  readonly qr: boolean;
  readonly aa: boolean;
  readonly tc: boolean;
  readonly rd: boolean;
  readonly ra: boolean;
  readonly question: { readonly name: string; readonly type: string } | undefined;
  readonly answers: readonly Record_[];
  readonly authorities: readonly Record_[];
  readonly additionals: readonly Record_[];
  /** The reply's OPT pseudo-record, if any. */
  readonly opt: { readonly udpSize: number; readonly do: boolean; readonly version: number; readonly options: ReadonlyArray<{ code: number; data: Buffer }> } | undefined;
  /** First Extended DNS Error (RFC 8914, OPT option 15), if any. */
  readonly ede: Ede | undefined;
  /** Every EDE option, in order. */
  readonly edes: readonly Ede[];
  /** Decode problems dns2 reported (empty for a well-formed reply). */
  readonly decodeErrors: readonly string[];
  /** Bytes on the wire (without the TCP length prefix). */
  readonly size: number;
  readonly raw: Buffer;
}

function typeNumber(type: string | number): number {
  if (typeof type === 'number') return type;
  const upper = type.toUpperCase();
  const known = QTYPE[upper];
  if (known !== undefined) return known;
  const generic = /^TYPE(\d+)$/.exec(upper);
  if (generic !== null) return Number(generic[1]);
  throw new Error(`unknown query type ${type}`);
}

export function typeName(code: number): string {
  if (code === 41) return 'OPT';
  return (Packet.TYPE_NAME as Record<number, string>)[code] ?? `TYPE${code}`;
}

/** Encodes a query with dns2. */
export function encodeQuery(opts: Omit<QueryOptions, 'server'> & { id: number }): Buffer {
  const packet = new Packet();
  packet.header.id = opts.id;
  packet.header.rd = opts.rd === false ? 0 : 1;
  (packet.questions as unknown[]).push({ name: opts.name, type: typeNumber(opts.type), class: opts.qclass ?? 1 });
  const edns = opts.edns === undefined ? {} : opts.edns;
  if (edns !== false) {
    packet.additionals.push(Packet.Resource.EDNS([], { udpPayloadSize: edns.udpSize ?? 1232, doFlag: edns.do ?? false }));
  }
  return packet.toBuffer();
}

/**
 * Walks the OPT record's RDATA ourselves (RFC 6891 §6.1.2: {code, length, data}*) so every option
 * is seen, including ones dns2 has no decoder for; EDE (code 15) is RFC 8914 §2: INFO-CODE(2) then
 * UTF-8 EXTRA-TEXT.
 */
function findOpt(raw: Buffer): { udpSize: number; do: boolean; version: number; options: Array<{ code: number; data: Buffer }> } | undefined {
  try {
    const qd = raw.readUInt16BE(4);
    const counts = raw.readUInt16BE(6) + raw.readUInt16BE(8) + raw.readUInt16BE(10);
    let off = 12;
    const skipName = (): void => {
      for (let guard = 0; guard < 128; guard++) {
        const len = raw[off]!;
        if (len === undefined) throw new Error('name runs past the end');
        if ((len & 0xc0) === 0xc0) {
          off += 2;
          return;
        }
        off += 1 + len;
        if (len === 0) return;
      }
      throw new Error('name too long');
    };
    for (let i = 0; i < qd; i++) {
      skipName();
      off += 4;
    }
    for (let i = 0; i < counts; i++) {
      skipName();
      const type = raw.readUInt16BE(off);
      const klass = raw.readUInt16BE(off + 2);
      const ttl = raw.readUInt32BE(off + 4);
      const rdlen = raw.readUInt16BE(off + 8);
      const rdStart = off + 10;
      off = rdStart + rdlen;
      if (off > raw.length) return undefined;
      if (type !== 41) continue;
      const options: Array<{ code: number; data: Buffer }> = [];
      for (let p = rdStart; p + 4 <= rdStart + rdlen; ) {
        const code = raw.readUInt16BE(p);
        const len = raw.readUInt16BE(p + 2);
        options.push({ code, data: Buffer.from(raw.subarray(p + 4, Math.min(p + 4 + len, rdStart + rdlen))) });
        p += 4 + len;
      }
      return { udpSize: klass, do: (ttl & 0x8000) !== 0, version: (ttl >>> 16) & 0xff, options };
    }
  } catch {
    return undefined;
  }
  return undefined;
}

function recordData(r: Record<string, unknown>): unknown {
  switch (r['type']) {
    case 1:
    case 28:
      return r['address'];
    case 2:
      return r['ns'];
    case 5:
    case 12:
      return r['domain'];
    case 15:
      return { preference: r['priority'], exchange: r['exchange'] };
    case 16:
      return r['data'];
    case 6:
      return {
        mname: String(r['primary']),
        rname: String(r['admin']),
        serial: Number(r['serial']),
        refresh: Number(r['refresh']),
        retry: Number(r['retry']),
        expire: Number(r['expiration']),
        minimum: Number(r['minimum']),
      } satisfies SoaData;
    default:
      return Buffer.isBuffer(r['data']) ? (r['data'] as Buffer).toString('hex') : r['data'];
  }
}

function toRecords(list: unknown[]): Record_[] {
  return list.map((x) => {
    const r = x as Record<string, unknown>;
    return { name: String(r['name']), type: typeName(Number(r['type'])), class: Number(r['class']), ttl: Number(r['ttl']), data: recordData(r) };
  });
}

/** Decodes a reply with dns2 (EDE and OPT from our own walk of the OPT bytes). Throws on an unusable header. */
export function decodeReply(raw: Buffer): DnsReply {
  const p = Packet.parse(raw) as unknown as {
    header: Record<string, number>;
    questions: Array<{ name: string; type: number }>;
    answers: unknown[];
    authorities: unknown[];
    additionals: unknown[];
    errors: Error[];
  };
  const opt = findOpt(raw);
  const edes: Ede[] = (opt?.options ?? [])
    .filter((o) => o.code === 15 && o.data.length >= 2)
    .map((o) => ({ code: o.data.readUInt16BE(0), text: o.data.subarray(2).toString('utf8') }));
  const rcodeNumber = p.header['rcode']!;
  const q = p.questions[0];
  return {
    id: p.header['id']!,
    rcode: RCODE_NAMES[rcodeNumber] ?? `RCODE${rcodeNumber}`,
    rcodeNumber,
    qr: p.header['qr'] === 1,
    aa: p.header['aa'] === 1,
    tc: p.header['tc'] === 1,
    rd: p.header['rd'] === 1,
    ra: p.header['ra'] === 1,
    question: q === undefined ? undefined : { name: q.name, type: typeName(q.type) },
    answers: toRecords(p.answers),
    authorities: toRecords(p.authorities),
    additionals: toRecords(p.additionals.filter((r) => (r as { type: number }).type !== 41)),
    opt,
    ede: edes[0],
    edes,
    decodeErrors: p.errors.map((e) => e.message),
    size: raw.length,
    raw,
  };
}

function randomId(): number {
  return Math.floor(Math.random() * 0x10000);
}

export class DnsTimeoutError extends Error {
  constructor(readonly transport: Transport, readonly timeoutMs: number, target: string) {
    super(`no ${transport} reply from ${target} within ${timeoutMs} ms`);
    this.name = 'DnsTimeoutError';
  }
}

async function udpExchange(server: Server, bytes: Buffer, bind: string | undefined, timeoutMs: number, accept: (msg: Buffer) => boolean): Promise<Buffer> {
  const family = isIPv6(server.address) ? 'udp6' : 'udp4';
  const sock: UdpSocket = createSocket(family);
  try {
    await new Promise<void>((ok, fail) => {
      sock.once('error', fail);
      sock.bind({ address: bind ?? (family === 'udp6' ? '::1' : '127.0.0.1'), port: 0 }, () => {
        sock.off('error', fail);
        ok();
      });
    });
    return await new Promise<Buffer>((ok, fail) => {
      const timer = setTimeout(() => fail(new DnsTimeoutError('udp', timeoutMs, `${server.address}:${server.port}`)), timeoutMs);
      sock.on('error', (err) => {
        clearTimeout(timer);
        fail(err);
      });
      sock.on('message', (msg, rinfo) => {
        if (rinfo.port !== server.port) return;
        if (!accept(msg)) return;
        clearTimeout(timer);
        ok(msg);
      });
      sock.send(bytes, server.port, server.address);
    });
  } finally {
    sock.close();
  }
}

function frame(message: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(message.length);
  return Buffer.concat([len, message]);
}

/** Connects a TCP socket, optionally from a chosen source address. */
export function tcpConnect(server: Server, bind?: string, timeoutMs = 3000): Promise<TcpSocket> {
  return new Promise((ok, fail) => {
    const sock = connect({ host: server.address, port: server.port, ...(bind === undefined ? {} : { localAddress: bind }) });
    const timer = setTimeout(() => {
      sock.destroy();
      fail(new Error(`TCP connect to ${server.address}:${server.port} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.off('error', onError);
      ok(sock);
    });
    const onError = (err: Error): void => {
      clearTimeout(timer);
      fail(err);
    };
    sock.once('error', onError);
  });
}

/**
 * A TCP connection reading RFC 1035 §4.2.2 / RFC 7766 length-prefixed frames; every frame is kept,
 * in arrival order, and waiters can ask for the reply with a given ID.
 */
export class TcpConnection {
  readonly frames: Buffer[] = [];
  closed = false;
  #buf: Buffer = Buffer.alloc(0);
  #waiters: Array<() => void> = [];

  private constructor(readonly socket: TcpSocket) {
    socket.on('data', (chunk: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, chunk]);
      while (this.#buf.length >= 2) {
        const len = this.#buf.readUInt16BE(0);
        if (this.#buf.length < 2 + len) break;
        this.frames.push(Buffer.from(this.#buf.subarray(2, 2 + len)));
        this.#buf = this.#buf.subarray(2 + len);
      }
      this.#wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.#wake();
    });
    socket.on('error', () => undefined);
  }

  static async open(server: Server, opts: { bind?: string; timeoutMs?: number } = {}): Promise<TcpConnection> {
    return new TcpConnection(await tcpConnect(server, opts.bind, opts.timeoutMs));
  }

  #wake(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w();
  }

  /** Writes one message with its 2-byte length prefix (or raw bytes with framed: false). */
  send(message: Buffer, framed = true): void {
    this.socket.write(framed ? frame(message) : message);
  }

  /** Resolves once `predicate(frames)` holds, or rejects on timeout / close. */
  async until(predicate: (frames: readonly Buffer[]) => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (predicate(this.frames)) return;
      if (this.closed) throw new Error(`TCP connection closed after ${this.frames.length} frame(s)`);
      const left = deadline - Date.now();
      if (left <= 0) throw new DnsTimeoutError('tcp', timeoutMs, `${this.socket.remoteAddress}:${this.socket.remotePort}`);
      await new Promise<void>((ok) => {
        const timer = setTimeout(ok, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          ok();
        });
      });
    }
  }

  /** Resolves when the server closes the connection (e.g. idle timeout), with the elapsed ms. */
  async waitClosed(timeoutMs: number): Promise<number> {
    const start = Date.now();
    await this.until(() => false, timeoutMs).catch((err: unknown) => {
      if (!this.closed) throw err;
    });
    return Date.now() - start;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** One query, one decoded reply. Rejects with DnsTimeoutError when no matching reply arrives in time. */
export async function query(opts: QueryOptions): Promise<DnsReply> {
  const id = opts.id ?? randomId();
  const bytes = encodeQuery({ ...opts, id });
  const timeoutMs = opts.timeoutMs ?? 3000;
  if ((opts.transport ?? 'udp') === 'udp') {
    const raw = await udpExchange(opts.server, bytes, opts.bind, timeoutMs, (msg) => msg.length >= 2 && msg.readUInt16BE(0) === id);
    return decodeReply(raw);
  }
  const conn = await TcpConnection.open(opts.server, { ...(opts.bind === undefined ? {} : { bind: opts.bind }), timeoutMs });
  try {
    conn.send(bytes);
    await conn.until((frames) => frames.some((f) => f.length >= 2 && f.readUInt16BE(0) === id), timeoutMs);
    return decodeReply(conn.frames.find((f) => f.readUInt16BE(0) === id)!);
  } finally {
    conn.close();
  }
}

export interface PipelineResult {
  /** Replies in the order of the queries given (matched by ID). */
  readonly replies: readonly DnsReply[];
  /** IDs in the order the replies arrived. */
  readonly arrivalOrder: readonly number[];
  /** Frames whose ID matched no query (must be empty for a correct server). */
  readonly unmatched: readonly Buffer[];
}

/**
 * RFC 7766 §6.2.1.1 pipelining: writes every query on ONE connection in a single write, then
 * collects the replies by ID (in any order). IDs are distinct per query.
 */
export async function pipelineTcp(server: Server, queries: ReadonlyArray<Omit<QueryOptions, 'server' | 'transport'>>, opts: { bind?: string; timeoutMs?: number } = {}): Promise<PipelineResult> {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const used = new Set<number>();
  const ids = queries.map((q) => {
    let id = q.id ?? randomId();
    while (used.has(id)) id = randomId();
    used.add(id);
    return id;
  });
  const conn = await TcpConnection.open(server, { ...(opts.bind === undefined ? {} : { bind: opts.bind }), timeoutMs });
  try {
    conn.socket.write(Buffer.concat(queries.map((q, i) => frame(encodeQuery({ ...q, id: ids[i]! })))));
    const seen = (frames: readonly Buffer[]): Set<number> => new Set(frames.filter((f) => f.length >= 2).map((f) => f.readUInt16BE(0)));
    await conn.until((frames) => ids.every((id) => seen(frames).has(id)), timeoutMs);
    const byId = new Map<number, Buffer>();
    for (const f of conn.frames) if (!byId.has(f.readUInt16BE(0))) byId.set(f.readUInt16BE(0), f);
    return {
      replies: ids.map((id) => decodeReply(byId.get(id)!)),
      arrivalOrder: conn.frames.map((f) => f.readUInt16BE(0)),
      unmatched: conn.frames.filter((f) => !used.has(f.readUInt16BE(0))),
    };
  } finally {
    conn.close();
  }
}

export interface RawOptions {
  readonly server: Server;
  readonly transport?: Transport;
  readonly bind?: string;
  /** How long to wait for a reply; no reply in time resolves undefined (a dropped packet). Default 1000. */
  readonly timeoutMs?: number;
  /** TCP only: add the 2-byte length prefix (default true). */
  readonly framed?: boolean;
}

/**
 * Sends arbitrary bytes (fuzz / malformed tests) and resolves with the first reply's bytes, or
 * undefined when nothing came back in time (UDP) or the connection closed without a reply (TCP).
 */
export async function sendRaw(bytes: Buffer, opts: RawOptions): Promise<Buffer | undefined> {
  const timeoutMs = opts.timeoutMs ?? 1000;
  if ((opts.transport ?? 'udp') === 'udp') {
    try {
      return await udpExchange(opts.server, bytes, opts.bind, timeoutMs, () => true);
    } catch (err) {
      if (err instanceof DnsTimeoutError) return undefined;
      throw err;
    }
  }
  const conn = await TcpConnection.open(opts.server, { ...(opts.bind === undefined ? {} : { bind: opts.bind }), timeoutMs });
  try {
    conn.send(bytes, opts.framed ?? true);
    await conn.until((frames) => frames.length > 0, timeoutMs).catch(() => undefined);
    return conn.frames[0];
  } finally {
    conn.close();
  }
}

/**
 * A long-lived UDP socket for sending many raw packets fast (fuzzing): fire-and-forget sends,
 * replies counted. Bounded by the caller.
 */
export async function openUdpBlaster(server: Server, bind?: string): Promise<{ send(bytes: Buffer): Promise<void>; replies(): number; close(): Promise<void> }> {
  const family = isIPv6(server.address) ? 'udp6' : 'udp4';
  const sock = createSocket(family);
  let replies = 0;
  sock.on('message', () => {
    replies++;
  });
  sock.on('error', () => undefined);
  await new Promise<void>((ok) => sock.bind({ address: bind ?? (family === 'udp6' ? '::1' : '127.0.0.1'), port: 0 }, () => ok()));
  return {
    send: (bytes) =>
      new Promise<void>((ok) => {
        sock.send(bytes, server.port, server.address, () => ok());
      }),
    replies: () => replies,
    close: () => new Promise<void>((ok) => sock.close(() => ok())),
  };
}

/**
 * Sends several queries from ONE pre-bound UDP socket in the same tick (a burst the server reads
 * back to back, e.g. to see identical in-flight queries coalesced) and collects the replies by ID.
 */
export async function udpBurst(server: Server, queries: ReadonlyArray<Omit<QueryOptions, 'server' | 'transport' | 'id'>>, opts: { bind?: string; timeoutMs?: number } = {}): Promise<DnsReply[]> {
  const family = isIPv6(server.address) ? 'udp6' : 'udp4';
  const sock = createSocket(family);
  const timeoutMs = opts.timeoutMs ?? 5000;
  const ids = queries.map((_, i) => (0x1000 + i * 7) & 0xffff);
  const replies = new Map<number, Buffer>();
  try {
    await new Promise<void>((ok) => sock.bind({ address: opts.bind ?? (family === 'udp6' ? '::1' : '127.0.0.1'), port: 0 }, () => ok()));
    await new Promise<void>((ok, fail) => {
      const timer = setTimeout(() => fail(new DnsTimeoutError('udp', timeoutMs, `${server.address}:${server.port} (${replies.size}/${ids.length} replies)`)), timeoutMs);
      sock.on('message', (msg, rinfo) => {
        if (rinfo.port !== server.port || msg.length < 2) return;
        const id = msg.readUInt16BE(0);
        if (ids.includes(id) && !replies.has(id)) replies.set(id, msg);
        if (replies.size === ids.length) {
          clearTimeout(timer);
          ok();
        }
      });
      const packets = queries.map((q, i) => encodeQuery({ ...q, id: ids[i]! }));
      for (const p of packets) sock.send(p, server.port, server.address);
    });
    return ids.map((id) => decodeReply(replies.get(id)!));
  } finally {
    sock.close();
  }
}
