// Issue 2, malformed input: each known-bad shape gets FORMERR when the header can be read and is
// dropped otherwise, always counted in dnswarden_malformed_total; then a bounded, seeded fuzz run
// (tens of thousands of random and mutated packets over UDP, a few hundred TCP streams) leaves the
// server answering correctly. Every loop is bounded in count and in time.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { encodeQuery, openUdpBlaster, query, sendRaw, TcpConnection, decodeReply, type Transport } from '../helpers/dns-client.js';
import { metricValue, startWarden, TEST_SESSION, type Warden } from '../helpers/warden.js';

const FUZZ_SOURCE = '127.0.0.7';

let upstream: Upstream;
let warden: Warden;

beforeAll(async () => {
  upstream = await startUpstream();
  // A short TCP idle timeout so half-sent fuzz frames do not pin connections for long. The fuzz
  // comes from its own session (127.0.0.7), so whatever the policy makes of mutated names (blocks,
  // a quarantine) cannot hide whether the server still answers the test session on 127.0.0.1.
  warden = await startWarden(
    {
      server: { tcp_idle_timeout_ms: 1000 },
      sessions: { static: [{ ...TEST_SESSION, addresses: [...TEST_SESSION.addresses] }, { id: 'fuzzer', addresses: [FUZZ_SOURCE + '/32'], type: 'batch', user: 'fuzz', role: 'agent' }] },
    },
    { upstream },
  );
});

afterAll(async () => {
  await warden?.close();
  await upstream?.stop();
});

/** mulberry32: a small seeded PRNG, so a failing run can be replayed from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const header = (id: number, flags: number, qd: number, an = 0, ns = 0, ar = 0): Buffer => {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(flags, 2);
  b.writeUInt16BE(qd, 4);
  b.writeUInt16BE(an, 6);
  b.writeUInt16BE(ns, 8);
  b.writeUInt16BE(ar, 10);
  return b;
};
const qname = (...labels: string[]): Buffer => Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'latin1')])), Buffer.from([0])]);
const typeClass = (type = 1, klass = 1): Buffer => Buffer.from([type >> 8, type & 0xff, klass >> 8, klass & 0xff]);

/** Packets whose header is readable but whose body is not a valid single question: FORMERR expected. */
const FORMERR_CASES: ReadonlyArray<{ title: string; bytes: Buffer }> = [
  { title: 'QDCOUNT = 0', bytes: header(0x1001, 0x0100, 0) },
  { title: 'QDCOUNT = 2', bytes: Buffer.concat([header(0x1002, 0x0100, 2), qname('www', 'dnswarden', 'test'), typeClass(), qname('txt', 'dnswarden', 'test'), typeClass(16)]) },
  { title: 'question cut off before type/class', bytes: Buffer.concat([header(0x1003, 0x0100, 1), qname('www', 'dnswarden', 'test')]) },
  { title: 'name runs past the end', bytes: Buffer.concat([header(0x1004, 0x0100, 1), Buffer.from([20]), Buffer.from('short', 'latin1')]) },
  { title: 'a compression loop in the question name', bytes: Buffer.concat([header(0x1005, 0x0100, 1), Buffer.from([0xc0, 12]), typeClass()]) },
  { title: 'a forward compression pointer past the end', bytes: Buffer.concat([header(0x1006, 0x0100, 1), Buffer.from([3, 0x77, 0x77, 0x77, 0xc0, 0xff]), typeClass()]) },
  { title: 'a reserved label type (0x40)', bytes: Buffer.concat([header(0x1007, 0x0100, 1), Buffer.from([0x41, 0x61, 0]), typeClass()]) },
  { title: 'a name longer than 255 octets', bytes: Buffer.concat([header(0x1008, 0x0100, 1), qname(...Array.from({ length: 5 }, () => 'a'.repeat(63))), typeClass()]) },
  { title: 'ARCOUNT claims an OPT that is not there', bytes: Buffer.concat([header(0x1009, 0x0100, 1, 0, 0, 1), qname('www', 'dnswarden', 'test'), typeClass()]) },
];

/** Packets with no readable header: dropped (no reply), still counted. */
const DROP_CASES: ReadonlyArray<{ title: string; bytes: Buffer }> = [
  { title: 'empty datagram', bytes: Buffer.alloc(0) },
  { title: '1 byte', bytes: Buffer.from([0x42]) },
  { title: '11 bytes (header cut short)', bytes: header(0x2001, 0x0100, 1).subarray(0, 11) },
];

async function malformedTotal(transport: Transport): Promise<number> {
  return metricValue(await warden.app.metricsText(), 'dnswarden_malformed_total', { transport }) ?? 0;
}

async function expectStillAnswering(): Promise<void> {
  for (const transport of ['udp', 'tcp'] as const) {
    const reply = await query({ server: warden.dns, transport, name: FIXTURE.cnameChain.name, type: 'A', timeoutMs: 5000 });
    expect(reply.rcode).toBe('NOERROR');
    expect(reply.answers.at(-1)?.data).toBe(FIXTURE.cnameChain.address);
  }
  const refused = await query({ server: warden.dns, bind: '127.0.0.2', name: FIXTURE.a.name, type: 'A', timeoutMs: 5000 });
  expect(refused.rcode).toBe('REFUSED');
}

describe('known malformed shapes over UDP', () => {
  it.each(FORMERR_CASES)('$title → FORMERR with the same ID, counted once', async ({ bytes }) => {
    const before = await malformedTotal('udp');
    const raw = await sendRaw(bytes, { server: warden.dns, transport: 'udp', timeoutMs: 2000 });
    expect(raw, 'expected a FORMERR reply, got none').toBeDefined();
    const reply = decodeReply(raw!);
    expect(reply.id).toBe(bytes.readUInt16BE(0));
    expect(reply.qr).toBe(true);
    expect(reply.rcode).toBe('FORMERR');
    expect((await malformedTotal('udp')) - before).toBe(1);
  });

  it.each(DROP_CASES)('$title → no reply, counted once', async ({ bytes }) => {
    const before = await malformedTotal('udp');
    const raw = await sendRaw(bytes, { server: warden.dns, transport: 'udp', timeoutMs: 500 });
    expect(raw).toBeUndefined();
    expect((await malformedTotal('udp')) - before).toBe(1);
  });

  it('a response (QR=1) sent to the server is not answered (no reflection loops)', async () => {
    const bytes = Buffer.concat([header(0x3001, 0x8180, 1), qname('www', 'dnswarden', 'test'), typeClass()]);
    const raw = await sendRaw(bytes, { server: warden.dns, transport: 'udp', timeoutMs: 500 });
    expect(raw).toBeUndefined();
  });
});

describe('known malformed shapes over TCP', () => {
  it('a frame with QDCOUNT = 0 → a FORMERR frame with the same ID', async () => {
    const before = await malformedTotal('tcp');
    const raw = await sendRaw(header(0x4001, 0x0100, 0), { server: warden.dns, transport: 'tcp', timeoutMs: 2000 });
    expect(raw).toBeDefined();
    const reply = decodeReply(raw!);
    expect(reply.id).toBe(0x4001);
    expect(reply.rcode).toBe('FORMERR');
    expect((await malformedTotal('tcp')) - before).toBe(1);
  });

  it('a malformed frame between two good ones on one connection: both good ones are answered', async () => {
    const conn = await TcpConnection.open(warden.dns);
    try {
      conn.send(encodeQuery({ id: 0x5001, name: FIXTURE.a.name, type: 'A' }));
      conn.send(Buffer.concat([header(0x5002, 0x0100, 1), Buffer.from([0xc0, 12]), typeClass()]));
      conn.send(encodeQuery({ id: 0x5003, name: FIXTURE.aaaa.name, type: 'AAAA' }));
      await conn.until((frames) => [0x5001, 0x5003].every((id) => frames.some((f) => f.readUInt16BE(0) === id)), 3000);
      const byId = new Map(conn.frames.map((f) => [f.readUInt16BE(0), decodeReply(f)]));
      expect(byId.get(0x5001)?.answers.map((r) => r.data)).toEqual([FIXTURE.a.address]);
      expect(byId.get(0x5003)?.answers.map((r) => r.data)).toEqual([FIXTURE.aaaa.address]);
    } finally {
      conn.close();
    }
  });
});

describe('bounded fuzz', () => {
  const SEED = 0x5eed2;
  const UDP_PACKETS = 30_000;
  const TCP_STREAMS = 300;
  const TIME_BUDGET_MS = 25_000;

  it(`${UDP_PACKETS} seeded random/mutated UDP packets and ${TCP_STREAMS} TCP streams leave the server answering`, async () => {
    const rand = prng(SEED);
    const int = (n: number) => Math.floor(rand() * n);
    const seeds: Buffer[] = [
      encodeQuery({ id: 1, name: FIXTURE.a.name, type: 'A' }),
      encodeQuery({ id: 2, name: FIXTURE.txt.name, type: 'TXT', edns: false }),
      encodeQuery({ id: 3, name: FIXTURE.cnameChain.name, type: 'A', edns: { udpSize: 4096, do: true } }),
      encodeQuery({ id: 4, name: 'x.y.z.dnswarden.test', type: 'MX' }),
      ...FORMERR_CASES.map((c) => c.bytes),
    ];
    const mutate = (src: Buffer): Buffer => {
      const b = Buffer.from(src);
      const kind = int(6);
      if (kind === 0) for (let i = 0, n = 1 + int(4); i < n; i++) b[int(b.length)] = int(256); // byte flips
      else if (kind === 1) for (let i = 0, n = 1 + int(4); i < n; i++) b[int(b.length)]! ^= 1 << int(8); // bit flips
      else if (kind === 2) return b.subarray(0, int(b.length + 1)); // truncation
      else if (kind === 3) return Buffer.concat([b, Buffer.from(Array.from({ length: 1 + int(64) }, () => int(256)))]); // trailing junk
      else if (kind === 4) {
        b.writeUInt16BE(int(0x10000), 4 + 2 * int(4)); // a random section count
      } else {
        const at = 12 + int(Math.max(1, b.length - 12));
        if (at < b.length) b[at] = [0xc0, 0x3f, 0x40, 0x80, 0xff, 0][int(6)]!; // label-length surprises
      }
      return b;
    };
    const randomPacket = (): Buffer => Buffer.from(Array.from({ length: int(600) }, () => int(256)));
    const next = (): Buffer => (rand() < 0.3 ? randomPacket() : mutate(seeds[int(seeds.length)]!));

    const malformedBefore = (await malformedTotal('udp')) + (await malformedTotal('tcp'));
    const started = Date.now();
    const blaster = await openUdpBlaster(warden.dns, FUZZ_SOURCE);
    let sent = 0;
    try {
      while (sent < UDP_PACKETS && Date.now() - started < TIME_BUDGET_MS) {
        const batch: Promise<void>[] = [];
        for (let i = 0; i < 250 && sent < UDP_PACKETS; i++, sent++) batch.push(blaster.send(next()));
        await Promise.all(batch);
        await new Promise((ok) => setTimeout(ok, 2)); // let the server drain its socket buffer
      }
      await new Promise((ok) => setTimeout(ok, 300));
    } finally {
      await blaster.close();
    }
    expect(sent).toBeGreaterThanOrEqual(10_000);

    let streams = 0;
    for (; streams < TCP_STREAMS && Date.now() - started < TIME_BUDGET_MS + 10_000; streams++) {
      const conn = await TcpConnection.open(warden.dns, { bind: FUZZ_SOURCE }).catch(() => undefined);
      if (conn === undefined) continue;
      try {
        const pick = int(4);
        if (pick === 0) conn.send(next()); // a framed mutated message
        else if (pick === 1) conn.send(randomPacket(), false); // unframed garbage
        else if (pick === 2) conn.send(Buffer.from([0xff, 0xff, 1, 2, 3]), false); // a length prefix that lies
        else conn.send(Buffer.from([0, 0]), false); // a zero-length frame
        await conn.until((f) => f.length > 0, 20).catch(() => undefined);
      } finally {
        conn.close();
      }
    }
    expect(streams).toBeGreaterThanOrEqual(100);

    await expectStillAnswering();
    const malformedAfter = (await malformedTotal('udp')) + (await malformedTotal('tcp'));
    // ~30 % of UDP packets are pure random bytes; nearly all of those are malformed.
    expect(malformedAfter - malformedBefore).toBeGreaterThan(sent * 0.1);
    expect(metricValue(await warden.app.metricsText(), 'dnswarden_transport_faults_total') ?? 0).toBe(0);
  }, 90_000);
});
