// Property tests for the hand-written codec (src/dns/wire.ts), which the rest of the suite reaches only
// through sockets: on random valid queries our decoder agrees with two independent decoders
// (dns-packet and dns2) on ID, flags, name, type, class and EDNS; on random bytes — and on valid
// packets with random corruption — neither decoder of ours throws. Seeded, bounded run counts.
import dnsPacket from 'dns-packet';
import dns2 from 'dns2';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeQuery, decodeUpstreamReply, type Peer, type Query } from '../../src/dns/wire.js';

const udp: Peer = { address: '127.0.0.1', port: 5300, transport: 'udp' };
const tcp: Peer = { ...udp, transport: 'tcp' };
const RUNS = { numRuns: 2000, seed: 20261206 };

// Labels in the hostname alphabet, mixed case: what real clients send and what both peers decode the same way.
const label = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_-]{0,20}$/);
const name = fc.array(label, { minLength: 1, maxLength: 6 }).map((ls) => ls.join('.')).filter((n) => n.length <= 250);
const qtype = fc.constantFrom('A', 'AAAA', 'TXT', 'MX', 'CNAME', 'NS', 'SOA', 'PTR', 'SRV', 'NULL', 'HTTPS', 'ANY');
const query = fc.record({
  id: fc.integer({ min: 0, max: 0xffff }),
  name,
  type: qtype,
  rd: fc.boolean(),
  cd: fc.boolean(),
  edns: fc.option(fc.record({ udpSize: fc.integer({ min: 0, max: 0xffff }), dnssecOk: fc.boolean() }), { nil: undefined }),
});
type Q = typeof query extends fc.Arbitrary<infer T> ? T : never;

function encode(q: Q): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id: q.id,
    flags: (q.rd ? dnsPacket.RECURSION_DESIRED : 0) | (q.cd ? dnsPacket.CHECKING_DISABLED : 0),
    questions: [{ type: q.type as dnsPacket.RecordType, name: q.name, class: 'IN' }],
    additionals: q.edns ? [{ type: 'OPT', name: '.', udpPayloadSize: q.edns.udpSize, flags: q.edns.dnssecOk ? dnsPacket.DNSSEC_OK : 0 }] : [],
  } as dnsPacket.Packet);
}

describe('decodeQuery agrees with dns-packet and dns2 on random valid queries', () => {
  it('ID, RD, CD, name (lower-cased, case kept in the echoed question), type, class, EDNS size and DO', () => {
    fc.assert(
      fc.property(query, fc.boolean(), (q, overTcp) => {
        const bytes = encode(q);
        const ours = decodeQuery(bytes, overTcp ? tcp : udp, 0, 1232);
        expect(ours.ok).toBe(true);
        const d = (ours as { query: Query }).query;
        const viaPacket = dnsPacket.decode(bytes);
        const viaDns2 = dns2.Packet.parse(bytes);
        expect(d.id).toBe(viaPacket.id);
        expect(d.id).toBe(viaDns2.header.id);
        expect(d.name).toBe(viaPacket.questions![0]!.name.toLowerCase());
        expect(d.name).toBe(viaDns2.questions[0]!.name.toLowerCase());
        expect(d.type).toBe(viaDns2.questions[0]!.type);
        expect(d.class).toBe(viaDns2.questions[0]!.class);
        expect(d.rd).toBe(viaDns2.header.rd === 1);
        expect(d.cd).toBe((viaDns2.header as unknown as { cd: number }).cd === 1);
        // The question is echoed byte for byte: the client's own case survives.
        expect(d.question.toString('latin1')).toContain(q.name.split('.')[0]!);
        if (q.edns) {
          const opt = viaDns2.additionals.find((r: { type: number }) => r.type === 41) as { class: number; doFlag: boolean };
          expect(d.edns).toEqual({ udpSize: Math.max(512, opt.class), dnssecOk: opt.doFlag });
          expect(d.maxReplyBytes).toBe(overTcp ? 65535 : Math.min(Math.max(512, opt.class), 1232));
        } else {
          expect(d.edns).toBeUndefined();
          expect(d.maxReplyBytes).toBe(overTcp ? 65535 : 512);
        }
      }),
      RUNS,
    );
  });

  it('arbitrary label bytes come out as master-file text (\\DDD for dots, backslashes and non-printables), never throwing', () => {
    const rawLabel = fc.uint8Array({ minLength: 1, maxLength: 63 });
    fc.assert(
      fc.property(fc.array(rawLabel, { minLength: 1, maxLength: 3 }), fc.integer({ min: 0, max: 0xffff }), (labels, id) => {
        const parts = labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)]));
        const header = Buffer.from([id >> 8, id & 0xff, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        const bytes = Buffer.concat([header, ...parts, Buffer.from([0, 0, 1, 0, 1])]);
        const r = decodeQuery(bytes, udp, 0, 1232);
        expect(r.ok).toBe(true);
        const text = (r as { query: Query }).query.name;
        expect(text).toMatch(/^[\x21-\x7e]*$/); // printable only: safe in logs and EDE text
        const expected = labels
          .map((l) =>
            [...l]
              .map((c) => (c >= 0x41 && c <= 0x5a ? c + 0x20 : c))
              .map((c) => (c > 0x20 && c < 0x7f && c !== 0x2e && c !== 0x5c ? String.fromCharCode(c) : `\\${String(c).padStart(3, '0')}`))
              .join(''),
          )
          .join('.');
        expect(text).toBe(expected);
      }),
      RUNS,
    );
  });
});

describe('no input throws out of the decoders', () => {
  const anyQuery: Query = { id: 1, name: 'example.com', type: 1, class: 1, rd: true, cd: false, question: encode({ id: 1, name: 'example.com', type: 'A', rd: true, cd: false, edns: undefined }).subarray(12), edns: undefined, maxReplyBytes: 512, peer: udp, atMs: 0 };

  it('random byte strings (0–600 bytes), over UDP and TCP', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 600 }), fc.boolean(), (bytes, overTcp) => {
        const buf = Buffer.from(bytes);
        const r = decodeQuery(buf, overTcp ? tcp : udp, 0, 1232);
        if (!r.ok && r.reply) expect(r.reply.length).toBeGreaterThanOrEqual(12); // a FORMERR/NOTIMP/BADVERS reply, never garbage
        decodeUpstreamReply(buf, anyQuery, buf.length >= 2 ? buf.readUInt16BE(0) : 0, 86_400);
      }),
      { ...RUNS, numRuns: 5000 },
    );
  });

  it('valid queries and replies with random bytes overwritten or cut short', () => {
    const reply = (q: Q) =>
      dnsPacket.encode({
        type: 'response',
        id: q.id,
        flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE,
        questions: [{ type: 'A', name: q.name, class: 'IN' }],
        answers: [
          { type: 'CNAME', name: q.name, ttl: 60, data: `x.${q.name}` },
          { type: 'A', name: `x.${q.name}`, ttl: 30, data: '192.0.2.1' },
        ],
        additionals: [{ type: 'OPT', name: '.', udpPayloadSize: 1232 }],
      } as dnsPacket.Packet);
    fc.assert(
      fc.property(query, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.nat(), (q, edits, cut) => {
        for (const base of [encode(q), reply(q)]) {
          const buf = Buffer.from(base);
          for (const [at, value] of edits) buf[at % buf.length] = value;
          const short = buf.subarray(0, Math.max(0, buf.length - (cut % 16)));
          decodeQuery(short, udp, 0, 1232);
          decodeQuery(short, tcp, 0, 1232);
          decodeUpstreamReply(Buffer.from(short), anyQuery, q.id, 86_400);
        }
      }),
      RUNS,
    );
  });
});
