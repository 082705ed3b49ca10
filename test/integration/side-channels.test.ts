// What reaches a domain's nameserver besides new labels (issue 14, an adaptive attacker): the case of the letters
// of a name it already knows (`aBc` vs `AbC`: a bit a letter, on every repeat) and the query type. A recording nameserver of our own (node dgram on loopback, the server's only upstream,
// answering NOERROR with TTL 0 so nothing is cached) shows what the server sends it: names in lower case whatever
// the client's case (and the client still gets its own case back). (The type's cost, a choice among types on a
// known name, is in test/unit/scoring-window.test.ts.)
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { query } from '../helpers/dns-client.js';
import { startWarden, type Warden } from '../helpers/warden.js';

interface Recorder {
  readonly port: number;
  /** The question names exactly as received (case preserved) and their types. */
  readonly seen: { name: string; type: number }[];
  close(): Promise<void>;
}

async function startRecorder(): Promise<Recorder> {
  const sock = dgram.createSocket('udp4');
  const seen: { name: string; type: number }[] = [];
  sock.on('message', (msg, rinfo) => {
    const labels: string[] = [];
    let o = 12;
    while (o < msg.length && msg[o] !== 0 && msg[o]! < 64) {
      labels.push(msg.toString('latin1', o + 1, o + 1 + msg[o]!));
      o += msg[o]! + 1;
    }
    seen.push({ name: labels.join('.'), type: msg.readUInt16BE(o + 1) });
    const reply = Buffer.from(msg.subarray(0, o + 5)); // the question back: NOERROR, no records, nothing to cache
    reply.writeUInt16BE(0x8480 | (msg.readUInt16BE(2) & 0x0100), 2);
    reply.writeUInt16BE(1, 4);
    reply.fill(0, 6, 12);
    sock.send(reply, rinfo.port, rinfo.address);
  });
  await new Promise<void>((ok) => sock.bind(0, '127.0.0.1', ok));
  return { port: sock.address().port, seen, close: () => new Promise((ok) => sock.close(() => ok())) };
}

let warden: Warden | undefined;
let recorder: Recorder | undefined;
afterEach(async () => {
  await warden?.close();
  await recorder?.close();
  warden = recorder = undefined;
});

async function start(): Promise<{ warden: Warden; recorder: Recorder }> {
  recorder = await startRecorder();
  warden = await startWarden({
    sessions: { static: [{ id: 'chan-1', addresses: ['127.0.0.1/32'], type: 'batch', user: 'mallory', role: 'agent' }] },
    upstreams: [{ address: `127.0.0.1:${recorder.port}`, timeout_ms: 2000 }],
  });
  return { warden, recorder };
}

describe('the case of the letters', () => {
  it('leaves in lower case, whatever the client sent; the client gets its own case back', async () => {
    const { warden, recorder } = await start();
    const variants = ['mail.Chan-Lab.test', 'MAIL.chan-lab.TEST', 'mAiL.cHaN-lAb.tEsT', 'mail.chan-lab.test'];
    for (const name of variants) {
      const reply = await query({ server: warden.dns, name, type: 'A' });
      expect(reply.rcode).toBe('NOERROR');
      expect(reply.question?.name).toBe(name);
    }
    expect(recorder.seen.map((s) => s.name)).toEqual(variants.map(() => 'mail.chan-lab.test'));
  });
});

describe('the query type', () => {
  it('every type leaves as asked (a private one too: it is scored and costs its choice in the budgets)', async () => {
    const { warden, recorder } = await start();
    for (const type of ['TXT', 'MX', 52 /* TLSA */, 'CAA', 4660]) expect((await query({ server: warden.dns, name: 'x.chan-lab.test', type })).rcode).toBe('NOERROR');
    expect(recorder.seen.map((s) => s.type)).toEqual([16, 15, 52, 257, 4660]);
  });
});
