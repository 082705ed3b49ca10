// The client-facing TCP edge under abuse: a client that pipelines and never reads its answers, slow
// frames, a full connection table. Real sockets against the real transport (listenDns with a counting
// handler, so the figures are the transport's alone) and against the whole app.
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { listenDns, type DnsServer, type TransportOptions } from '../../src/transport.js';
import { createLogger, createMetrics } from '../../src/telemetry.js';
import { encodeQuery } from '../helpers/dns-client.js';
import { metricValue, startWarden } from '../helpers/warden.js';

const OPTS: TransportOptions = { tcpIdleTimeoutMs: 60_000, tcpMaxConnections: 16, tcpMaxConnectionsPerSource: 16, tcpMaxInflightPerConnection: 64 };

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

/** Resolves once `read()` has not changed for `quietMs` (or `limitMs` passed), with its last value. */
async function settled(read: () => number, quietMs: number, limitMs: number): Promise<number> {
  const deadline = Date.now() + limitMs;
  let last = read();
  let since = Date.now();
  while (Date.now() < deadline) {
    await new Promise((ok) => setTimeout(ok, 100));
    const now = read();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) break;
  }
  return last;
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

    const answered = await settled(() => calls, 1500, 60_000);
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
