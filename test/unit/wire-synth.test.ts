// encodeSynthReply writes our own replies (blocked, refused, failed) byte by byte, since a blocked flood gets one
// per query. It must write exactly what the dns-packet encoder it replaced wrote: the reference below is that
// encoder, as wire.ts used it, and every combination of rcode, EDNS/DO, EDE text (short, long, multi-byte),
// negative-TTL SOA, owner name (LDH in any case, non-LDH, root) and reply budget is compared byte for byte.
import dnsPacket from 'dns-packet';
import { describe, expect, it } from 'vitest';
import { decodeQuery, encodeSynthReply, isSafeName, type Query, type SynthOptions } from '../../src/dns/wire.js';

const UDP_SIZE = 1232;

/** The previous implementation (dns-packet), kept here as the oracle. */
function reference(q: Query, opts: SynthOptions, udpSize: number): Buffer {
  const authorities: dnsPacket.Answer[] = [];
  if (opts.negativeTtlSec !== undefined) {
    authorities.push({
      type: 'SOA', name: isSafeName(q.name) ? q.name : '.', ttl: opts.negativeTtlSec,
      data: { mname: 'dnswarden.invalid', rname: 'hostmaster.dnswarden.invalid', serial: 1, refresh: 3600, retry: 600, expire: 86_400, minimum: opts.negativeTtlSec },
    } as dnsPacket.Answer);
  }
  const additionals: dnsPacket.Answer[] = [];
  if (q.edns !== undefined) {
    const options: { code: number; data: Buffer }[] = [];
    if (opts.ede !== undefined) {
      let bytes = Buffer.from(opts.ede.text, 'utf8');
      if (bytes.length > 120) bytes = Buffer.from(bytes.subarray(0, 120).toString('utf8').replace(/\uFFFD$/, ''), 'utf8');
      const data = Buffer.alloc(2 + bytes.length);
      data.writeUInt16BE(opts.ede.code, 0);
      bytes.copy(data, 2);
      options.push({ code: 15, data });
    }
    additionals.push({ type: 'OPT', name: '.', udpPayloadSize: udpSize, flags: q.edns.dnssecOk ? dnsPacket.DNSSEC_OK : 0, options } as unknown as dnsPacket.Answer);
  }
  const rest = dnsPacket.encode({ type: 'response', id: q.id, flags: 0, questions: [], answers: [], authorities, additionals });
  const rcode = { NOERROR: 0, NXDOMAIN: 3, REFUSED: 5, SERVFAIL: 2 }[opts.rcode];
  const out = Buffer.alloc(rest.length + q.question.length);
  out.writeUInt16BE(q.id, 0);
  out.writeUInt16BE(0x8080 | (q.rd ? 0x0100 : 0) | (q.cd ? 0x0010 : 0) | rcode, 2);
  out.writeUInt16BE(1, 4);
  out.writeUInt16BE(authorities.length, 8);
  out.writeUInt16BE(additionals.length, 10);
  q.question.copy(out, 12);
  rest.copy(out, 12 + q.question.length, 12);
  return out;
}

function queryOf(name: string, opts: { edns?: boolean; dnssecOk?: boolean; udp?: number; transport?: 'udp' | 'tcp' } = {}): Query {
  const packet = dnsPacket.encode({
    type: 'query', id: 0x1234, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.CHECKING_DISABLED,
    questions: [{ type: 'A', name, class: 'IN' }],
    additionals: opts.edns ? [{ type: 'OPT', name: '.', udpPayloadSize: opts.udp ?? 1232, flags: opts.dnssecOk ? dnsPacket.DNSSEC_OK : 0 } as unknown as dnsPacket.Answer] : [],
  });
  const decoded = decodeQuery(packet, { address: '127.0.0.1', port: 5353, transport: opts.transport ?? 'udp' }, 0, UDP_SIZE);
  if (!decoded.ok) throw new Error(`test query did not decode: ${decoded.reason}`);
  return decoded.query;
}

const NAMES = ['www.example.com', 'WwW.ExAmPlE.CoM', 'mzxw6ytboi3tqnbrgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmrtgq2dmnzyhe3dcmr.x0.exfil.example', '_dmarc.a-b.example', 'a_b.example', '-bad.example', 'bad-.example', 'sp ace.example', 'x', `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`, ''];
const TEXTS = ['session quarantined (qr-0a1b2c3d-1f)', 'threshold: score 0.91: label_entropy 0.40, name_length 0.35 (0a1b2c3d-2)', 'x'.repeat(200), `${'é'.repeat(59)}ab`, `${'a'.repeat(119)}é`, ''];

describe('encodeSynthReply', () => {
  it('writes exactly what the dns-packet encoder wrote, for every combination', () => {
    let compared = 0;
    for (const name of NAMES) {
      for (const edns of [undefined, { dnssecOk: false }, { dnssecOk: true }]) {
        const q = queryOf(name, edns === undefined ? {} : { edns: true, dnssecOk: edns.dnssecOk });
        for (const rcode of ['NXDOMAIN', 'REFUSED', 'SERVFAIL'] as const) {
          for (const text of [undefined, ...TEXTS]) {
            for (const negativeTtlSec of [undefined, 5]) {
              const opts: SynthOptions = { rcode, ede: text === undefined ? undefined : { code: 15, text }, ...(negativeTtlSec === undefined ? {} : { negativeTtlSec }) };
              const want = reference(q, opts, UDP_SIZE);
              const got = encodeSynthReply(q, opts, UDP_SIZE);
              if (want.length > q.maxReplyBytes) {
                expect(got.readUInt16BE(2) & 0x0200, `TC for ${name}`).toBe(0x0200); // over the budget: truncated, as before
                continue;
              }
              expect(got.toString('hex'), `${JSON.stringify(name)} ${rcode} ${JSON.stringify(text)} ${negativeTtlSec} ${JSON.stringify(edns)}`).toBe(want.toString('hex'));
              compared++;
            }
          }
        }
      }
    }
    expect(compared).toBeGreaterThan(900);
  });

  it('the SOA owner is the lower-cased query name when LDH, else the root; a reply over the budget is truncated', () => {
    const blocked = (q: Query) => dnsPacket.decode(encodeSynthReply(q, { rcode: 'NXDOMAIN', ede: { code: 15, text: 'blocked' }, negativeTtlSec: 5 }, UDP_SIZE));
    expect(blocked(queryOf('WWW.Example.COM', { edns: true })).authorities?.[0]).toMatchObject({ type: 'SOA', name: 'www.example.com', ttl: 5 });
    expect(blocked(queryOf('sp ace.example', { edns: true })).authorities?.[0]).toMatchObject({ type: 'SOA', name: '.' });
    const ede = (blocked(queryOf('www.example.com', { edns: true })).additionals?.[0] as unknown as { options: { code: number; data: Buffer }[] }).options[0]!;
    expect(ede.code).toBe(15);
    expect(ede.data.subarray(2).toString()).toBe('blocked');
    // A 250-byte name without EDNS: 512 bytes cannot hold the question, the SOA owner and the rest twice over.
    const long = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(57)}`;
    const q = queryOf(long);
    const reply = encodeSynthReply(q, { rcode: 'NXDOMAIN', ede: undefined, negativeTtlSec: 5 }, UDP_SIZE);
    expect(reply.length).toBeLessThanOrEqual(512);
    expect(reply.readUInt16BE(2) & 0x0200).toBe(0x0200); // TC: ask again over TCP
    expect(reply.readUInt16BE(2) & 0x000f).toBe(3);
    const overTcp = encodeSynthReply(queryOf(long, { transport: 'tcp' }), { rcode: 'NXDOMAIN', ede: undefined, negativeTtlSec: 5 }, UDP_SIZE);
    expect(dnsPacket.decode(overTcp).authorities?.[0]).toMatchObject({ type: 'SOA', name: long });
  });
});
