// An upstream's own RFC 8914 EDE (e.g. a validating resolver's "DNSSEC Bogus") reaches the agent with
// the forwarded answer, from the cache too; a client without EDNS gets no OPT at all.
import { onTestFinished, describe, expect, it } from 'vitest';
import { query } from '../helpers/dns-client.js';
import { startScriptedUpstream } from '../helpers/upstream.js';
import { startWarden } from '../helpers/warden.js';

/** SERVFAIL for the query, echoing its question, with its OPT carrying EDE 6 "signature expired". */
function bogusReply(q: Buffer): Buffer {
  // dnswarden's upstream query is header + question + one OPT (11 bytes, no options) at the end.
  const optStart = q.length - 11;
  const text = Buffer.from('signature expired', 'utf8');
  const option = Buffer.alloc(4 + 2 + text.length);
  option.writeUInt16BE(15, 0);
  option.writeUInt16BE(2 + text.length, 2);
  option.writeUInt16BE(6, 4); // DNSSEC Bogus
  text.copy(option, 6);
  const reply = Buffer.concat([q.subarray(0, q.length), option]);
  reply.writeUInt16BE(0x8182, 2); // QR, RD, RA, SERVFAIL
  reply.writeUInt16BE(option.length, optStart + 9);
  return reply;
}

describe('EDE from the upstream', () => {
  it('is passed on with the forwarded SERVFAIL, also from the cache, and never to a client without EDNS', async () => {
    const upstream = await startScriptedUpstream((q) => bogusReply(q));
    onTestFinished(() => upstream.stop());
    const warden = await startWarden({ upstreams: [{ address: upstream.hostPort, timeout_ms: 500 }] });
    onTestFinished(() => warden.close());

    const first = await query({ server: warden.dns, name: 'bogus.example.org', type: 'A' });
    expect(first.rcode).toBe('SERVFAIL');
    expect(first.ede).toEqual({ code: 6, text: 'signature expired' });
    const cached = await query({ server: warden.dns, name: 'bogus.example.org', type: 'A' });
    expect(cached.ede).toEqual({ code: 6, text: 'signature expired' });
    expect(upstream.received).toHaveLength(1); // the second came from the cache (SERVFAIL kept servfail_ttl_s)

    const plain = await query({ server: warden.dns, name: 'bogus.example.org', type: 'A', edns: false });
    expect(plain.rcode).toBe('SERVFAIL');
    expect(plain.opt).toBeUndefined();
  });
});

describe('an upstream SERVFAIL without an EDE of its own', () => {
  it('gets EDE 0 (Other) "upstream answered SERVFAIL", also from the cache, and still no OPT without EDNS', async () => {
    const upstream = await startScriptedUpstream((q) => {
      const reply = Buffer.from(q); // header + question + our OPT: a reply with no records and an OPT without options
      reply.writeUInt16BE(0x8182, 2); // QR, RD, RA, SERVFAIL
      return reply;
    });
    onTestFinished(() => upstream.stop());
    const warden = await startWarden({ upstreams: [{ address: upstream.hostPort, timeout_ms: 500 }] });
    onTestFinished(() => warden.close());

    const first = await query({ server: warden.dns, name: 'broken.example.org', type: 'A' });
    expect(first.rcode).toBe('SERVFAIL');
    expect(first.edes).toEqual([{ code: 0, text: 'upstream answered SERVFAIL' }]);
    const cached = await query({ server: warden.dns, name: 'broken.example.org', type: 'A' });
    expect(cached.rcode).toBe('SERVFAIL');
    expect(cached.edes).toEqual([{ code: 0, text: 'upstream answered SERVFAIL' }]);
    expect(upstream.received).toHaveLength(1); // the cache still keeps an upstream SERVFAIL for servfail_ttl_s

    const plain = await query({ server: warden.dns, name: 'broken.example.org', type: 'A', edns: false });
    expect(plain.rcode).toBe('SERVFAIL');
    expect(plain.opt).toBeUndefined();
  });
});
