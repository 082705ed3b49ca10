// The client-facing TCP edge under abuse: a client that pipelines and never reads its answers, slow
// frames, a full connection table. Real sockets against the real transport (listenDns with a counting
// handler, so the figures are the transport's alone) and against the whole app.
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { listenDns, type DnsServer, type TransportOptions } from '../../src/dns/transport.js';
import { createLogger, createMetrics } from '../../src/ops/telemetry.js';
import { decodeReply, encodeQuery, TcpConnection } from '../helpers/dns-client.js';
import { metricValue, startWarden } from '../helpers/warden.js';
import { settled } from '../helpers/settled.js';

const OPTS: TransportOptions = { tcpIdleTimeoutMs: 60_000, tcpFrameTimeoutMs: 60_000, tcpMaxConnections: 16, tcpMaxConnectionsPerSource: 16, tcpMaxInflightPerConnection: 64 };

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function connectTo(port: number, host = '127.0.0.1', bind?: string): Promise<Socket> {
  return new Promise((ok, fail) => {
    const sock = connect({ host, port, ...(bind === undefined ? {} : { localAddress: bind }) });
    sock.once('connect', () => ok(sock));
    sock.once('error', fail);
    cleanups.push(() => sock.destroy());
  });
}

/** `count` tiny framed messages in one buffer (the transport does not parse them). */
function pipelined(count: number): Buffer {
  const one = Buffer.from([0, 12, ...Buffer.alloc(12)]);
  return Buffer.concat(Array.from({ length: count }, () => one));
}

describe('TCP back-pressure: a client that never reads its answers', () => {
  it('stops being read while its unsent replies exceed the bound, and gets every reply once it reads', async () => {
    const metrics = createMetrics();
    let calls = 0;
    const REPLY = Buffer.alloc(256, 1);
    const server: DnsServer = await listenDns(['127.0.0.1:0'], () => {
      calls++;
      return REPLY; // synchronous, like a cache hit or a REFUSED
    }, OPTS, metrics, createLogger('silent'));
    cleanups.push(() => server.close());

    const QUERIES = 100_000; // 25.8 MB of replies: far beyond what the kernel buffers for a reader that never reads
    const client = await connectTo(server.listeners[0]!.port);
    client.pause();
    client.write(pipelined(QUERIES));

    const answered = await settled(() => calls, { quietMs: 1500, limitMs: 60_000 });
    // Without back-pressure every query is answered and its reply held in the server's memory.
    expect(answered).toBeLessThan(QUERIES / 2);
    const paused = (await metrics.tcpWritePaused.get()).values[0]?.value ?? 0;
    expect(paused).toBeGreaterThan(0);

    // Nothing is lost: once the client reads, every query is answered.
    let received = 0;
    let pending = Buffer.alloc(0);
    const all = new Promise<void>((ok) => {
      client.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
          pending = pending.subarray(2 + pending.readUInt16BE(0));
          received++;
        }
        if (received === QUERIES) ok();
      });
    });
    client.resume();
    await Promise.race([all, new Promise((ok) => setTimeout(ok, 60_000))]);
    expect(received).toBe(QUERIES);
    expect(calls).toBe(QUERIES);
  }, 150_000);

  it('an unregistered source flooding REFUSED-bound queries over TCP is read no further (whole app)', async () => {
    const w = await startWarden({ upstreams: [{ address: '127.0.0.1:9' }], server: { tcp_idle_timeout_ms: 60_000 } });
    cleanups.push(() => w.close());
    const query = encodeQuery({ id: 1, name: 'flood.example.com', type: 'A' });
    const framed = Buffer.concat([Buffer.from([query.length >> 8, query.length & 0xff]), query]);
    const QUERIES = 100_000;
    const client = await connectTo(w.dns.port, '127.0.0.1', '127.0.0.2'); // 127.0.0.2 has no session
    client.pause();
    client.write(Buffer.concat(Array.from({ length: QUERIES }, () => framed)));

    const refused = async (): Promise<number> => metricValue(await w.app.metricsText(), 'dnswarden_queries_total', { transport: 'tcp', rcode: 'REFUSED' }) ?? 0;
    let last = -1;
    const deadline = Date.now() + 60_000;
    // Settled: the count stops moving for 1.5 s.
    for (let quietSince = Date.now(); Date.now() < deadline;) {
      await new Promise((ok) => setTimeout(ok, 250));
      const now = await refused();
      if (now !== last) {
        last = now;
        quietSince = Date.now();
      } else if (Date.now() - quietSince >= 1500) break;
    }
    expect(last).toBeGreaterThan(0);
    expect(last).toBeLessThan(QUERIES / 2);
    expect(metricValue(await w.app.metricsText(), 'dnswarden_tcp_write_paused_total')).toBeGreaterThan(0);
  }, 120_000);
});

// No upstream is needed: every query here is refused (no session, or a zone transfer from the session).
const NO_UPSTREAM = [{ address: '127.0.0.1:9' }];

describe('TCP frame deadline', () => {
  it('closes a connection whose frame trickles in a byte at a time past server.tcp_frame_timeout_ms, though the idle timer keeps being reset', async () => {
    const w = await startWarden({ upstreams: NO_UPSTREAM, server: { tcp_idle_timeout_ms: 10_000, tcp_frame_timeout_ms: 500 } });
    cleanups.push(() => w.close());
    const conn = await TcpConnection.open(w.dns, { bind: '127.0.0.2' });
    cleanups.push(() => conn.close());
    conn.send(Buffer.from([0xff, 0xff]), false); // a 65,535-byte frame announced, a byte every 100 ms
    const trickle = setInterval(() => { if (!conn.closed) conn.send(Buffer.from([0]), false); }, 100);
    cleanups.push(() => clearInterval(trickle));
    const ms = await conn.waitClosed(8000);
    expect(conn.closed).toBe(true);
    expect(ms).toBeGreaterThanOrEqual(300);
    expect(metricValue(await w.app.metricsText(), 'dnswarden_tcp_frame_timeouts_total')).toBe(1);
  }, 20_000);

  it('a frame completed within the deadline is answered, and the timer does not follow it', async () => {
    const w = await startWarden({ upstreams: NO_UPSTREAM, server: { tcp_idle_timeout_ms: 10_000, tcp_frame_timeout_ms: 600 } });
    cleanups.push(() => w.close());
    const conn = await TcpConnection.open(w.dns, { bind: '127.0.0.2' });
    cleanups.push(() => conn.close());
    const msg = encodeQuery({ id: 7, name: 'split.example.com', type: 'A' });
    const framed = Buffer.concat([Buffer.from([msg.length >> 8, msg.length & 0xff]), msg]);
    conn.send(framed.subarray(0, 5), false);
    await new Promise((ok) => setTimeout(ok, 100));
    conn.send(framed.subarray(5), false);
    await conn.until((frames) => frames.length === 1, 5000);
    expect(decodeReply(conn.frames[0]!).rcode).toBe('REFUSED');
    // Twice the deadline later, with no partial frame, the connection is still open.
    await new Promise((ok) => setTimeout(ok, 1200));
    expect(conn.closed).toBe(false);
    expect(metricValue(await w.app.metricsText(), 'dnswarden_tcp_frame_timeouts_total')).toBe(0);
  }, 20_000);

  it('a steady stream of pipelined frames, each chunk ending mid-frame, runs past the deadline: every completed frame restarts it', async () => {
    const w = await startWarden({ upstreams: NO_UPSTREAM, server: { tcp_idle_timeout_ms: 10_000, tcp_frame_timeout_ms: 400 } });
    cleanups.push(() => w.close());
    const conn = await TcpConnection.open(w.dns, { bind: '127.0.0.2' });
    cleanups.push(() => conn.close());
    const stream = Buffer.concat(Array.from({ length: 40 }, (_, i) => {
      const msg = encodeQuery({ id: i, name: `stream-${i}.example.com`, type: 'A' });
      return Buffer.concat([Buffer.from([msg.length >> 8, msg.length & 0xff]), msg]);
    }));
    // 40 chunks 60 ms apart (2.4 s, six deadlines), each cut a little past a frame boundary.
    const step = Math.ceil(stream.length / 40);
    const started = Date.now();
    for (let at = 0; at < stream.length && !conn.closed; at += step) {
      conn.send(stream.subarray(at, at + step), false);
      await new Promise((ok) => setTimeout(ok, 60));
    }
    expect(Date.now() - started).toBeGreaterThan(1200);
    await conn.until((frames) => frames.length === 40, 5000);
    expect(conn.closed).toBe(false);
    expect(metricValue(await w.app.metricsText(), 'dnswarden_tcp_frame_timeouts_total')).toBe(0);
  }, 20_000);
});

describe('a full TCP connection table', () => {
  it('lets a registered source evict the least recently active unregistered connection; an unregistered newcomer is turned away', async () => {
    const w = await startWarden({ upstreams: NO_UPSTREAM, server: { tcp_max_connections: 4, tcp_max_connections_per_source: 2, tcp_idle_timeout_ms: 60_000, tcp_frame_timeout_ms: 60_000 } });
    cleanups.push(() => w.close());
    // Four unregistered connections (two sources at the per-source cap) fill the table; each is used
    // once, in order, so the first is the least recently active.
    const squatters: TcpConnection[] = [];
    for (const [i, bind] of ['127.0.0.2', '127.0.0.2', '127.0.0.3', '127.0.0.3'].entries()) {
      const c = await TcpConnection.open(w.dns, { bind });
      cleanups.push(() => c.close());
      c.send(encodeQuery({ id: 100 + i, name: 'squat.example.com', type: 'A' }));
      await c.until((frames) => frames.length === 1, 5000);
      squatters.push(c);
      await new Promise((ok) => setTimeout(ok, 20));
    }
    // Another unregistered source: no slot for it.
    const newcomer = await TcpConnection.open(w.dns, { bind: '127.0.0.4' });
    cleanups.push(() => newcomer.close());
    await newcomer.waitClosed(5000);
    expect(newcomer.frames).toEqual([]);
    expect(metricValue(await w.app.metricsText(), 'dnswarden_tcp_rejected_total')).toBe(1);

    // The registered source (127.0.0.1, the test session) gets in and is answered as itself (EDE 21: a
    // zone transfer refused to a session, not EDE 18 "no session").
    const agent = await TcpConnection.open(w.dns, { bind: '127.0.0.1' });
    cleanups.push(() => agent.close());
    agent.send(encodeQuery({ id: 200, name: 'example.com', type: 'AXFR' }));
    await agent.until((frames) => frames.length === 1, 5000);
    const reply = decodeReply(agent.frames[0]!);
    expect(reply.id).toBe(200);
    expect(reply.rcode).toBe('REFUSED');
    expect(reply.edes.map((e) => e.code)).toEqual([21]);

    await squatters[0]!.waitClosed(5000);
    expect(squatters.map((c) => c.closed)).toEqual([true, false, false, false]);
    const metrics = await w.app.metricsText();
    expect(metricValue(metrics, 'dnswarden_tcp_evicted_total')).toBe(1);
    expect(metricValue(metrics, 'dnswarden_tcp_rejected_total')).toBe(1);
    expect(metricValue(metrics, 'dnswarden_tcp_connections')).toBe(4);
  }, 30_000);

  it('a registered source is turned away too when every connection is registered (nothing to evict)', async () => {
    const w = await startWarden({ upstreams: NO_UPSTREAM, server: { tcp_max_connections: 2, tcp_max_connections_per_source: 3, tcp_idle_timeout_ms: 60_000 } });
    cleanups.push(() => w.close());
    const open: TcpConnection[] = [];
    for (let i = 0; i < 2; i++) {
      const c = await TcpConnection.open(w.dns, { bind: '127.0.0.1' });
      cleanups.push(() => c.close());
      c.send(encodeQuery({ id: 300 + i, name: 'example.com', type: 'AXFR' }));
      await c.until((frames) => frames.length === 1, 5000);
      open.push(c);
    }
    const third = await TcpConnection.open(w.dns, { bind: '127.0.0.1' });
    cleanups.push(() => third.close());
    await third.waitClosed(5000);
    expect(third.frames).toEqual([]);
    expect(open.map((c) => c.closed)).toEqual([false, false]);
    expect(metricValue(await w.app.metricsText(), 'dnswarden_tcp_evicted_total')).toBe(0);
  }, 30_000);
});

describe('closing the server drains TCP connections (close), or aborts them (destroy)', () => {
  /** Counts length-prefixed frames arriving on `sock`, and notes when the server ends its side. */
  function reader(sock: Socket): { frames: () => number; ended: Promise<void> } {
    let frames = 0;
    let pending = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
        pending = pending.subarray(2 + pending.readUInt16BE(0));
        frames++;
      }
    });
    return { frames: () => frames, ended: new Promise((ok) => sock.once('end', () => ok())) };
  }

  const slowServer = () =>
    listenDns(['127.0.0.1:0'], () => new Promise<Buffer>((ok) => setTimeout(() => ok(Buffer.alloc(12, 7)), 300)), OPTS, createMetrics(), createLogger('silent'));

  it('close(): every query already received is answered, then the connection ends; nothing new is accepted', async () => {
    const server = await slowServer();
    const port = server.listeners[0]!.port;
    const client = await connectTo(port);
    const r = reader(client);
    client.write(pipelined(3));
    await new Promise((ok) => setTimeout(ok, 50)); // the three are in flight (each takes 300 ms)
    const closing = server.close(10_000);
    await r.ended;
    expect(r.frames()).toBe(3);
    client.end();
    await closing;
    await expect(connectTo(port)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('close(): a client that never closes its side is cut after the drain time', async () => {
    const server = await slowServer();
    const client = await connectTo(server.listeners[0]!.port);
    client.on('error', () => undefined);
    const closedByServer = new Promise<void>((ok) => client.once('close', () => ok()));
    const started = Date.now();
    await server.close(400); // no query in flight: the server ends its side at once, the client never does
    await closedByServer;
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('destroy(): answers in flight are lost, the connection is reset at once', async () => {
    const server = await slowServer();
    const client = await connectTo(server.listeners[0]!.port);
    client.on('error', () => undefined);
    const r = reader(client);
    const closed = new Promise<void>((ok) => client.once('close', () => ok()));
    client.write(pipelined(2));
    await new Promise((ok) => setTimeout(ok, 50));
    server.destroy();
    await closed;
    expect(r.frames()).toBe(0);
  });
});

describe('closing the server while UDP answers are pending', () => {
  it('a reply that finishes after close() is dropped quietly: no unhandled rejection, no crash', async () => {
    const rejections: unknown[] = [];
    const onRejection = (err: unknown): void => void rejections.push(err);
    process.on('unhandledRejection', onRejection);
    cleanups.push(() => process.off('unhandledRejection', onRejection));
    const server = await listenDns(['127.0.0.1:0'], () => new Promise<Buffer>((ok) => setTimeout(() => ok(Buffer.alloc(12, 7)), 200)), OPTS, createMetrics(), createLogger('silent'));
    const { createSocket } = await import('node:dgram');
    const client = createSocket('udp4');
    cleanups.push(() => client.close());
    await new Promise<void>((ok) => client.send(Buffer.alloc(12), server.listeners[0]!.port, '127.0.0.1', () => ok()));
    await new Promise((ok) => setTimeout(ok, 50)); // the query is in the handler, its reply 150 ms away
    await server.close(100);
    await new Promise((ok) => setTimeout(ok, 400)); // the reply has finished by now
    expect(rejections).toEqual([]);
  });
});
