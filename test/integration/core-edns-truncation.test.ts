// Issue 2, RFC 6891 EDNS0 and truncation: a reply bigger than the client can take over UDP comes back
// with TC=1 (and its OPT), the client retries over TCP and gets the whole RRset; our UDP size is
// advertised, the client's honoured, the DO bit copied (RFC 3225), no OPT without one in the query.
import { describe, expect, it } from 'vitest';
import { FIXTURE } from '../helpers/upstream.js';
import { decodeReply, encodeQuery, query, sendRaw } from '../helpers/dns-client.js';
import { dig } from '../helpers/dig.js';
import { startWarden } from '../helpers/warden.js';
import { useSharedWarden } from '../helpers/shared-warden.js';

const t = useSharedWarden();

const txtOf = (answers: ReadonlyArray<{ data: unknown }>): string[] => answers.map((r) => (r.data as string[]).join('')).sort();

describe('TXT bigger than 512 bytes', () => {
  it('plain UDP without EDNS: TC=1 in at most 512 bytes; then over TCP: the whole RRset', async () => {
    const udp = await query({ server: t.warden.dns, transport: 'udp', name: FIXTURE.bigTxt.name, type: 'TXT', edns: false });
    expect(udp.rcode).toBe('NOERROR');
    expect(udp.tc).toBe(true);
    expect(udp.size).toBeLessThanOrEqual(512);
    expect(udp.question).toEqual({ name: FIXTURE.bigTxt.name, type: 'TXT' });
    // RFC 6891 §7: no OPT in the reply to a query that had none.
    expect(udp.opt).toBeUndefined();

    const tcp = await query({ server: t.warden.dns, transport: 'tcp', name: FIXTURE.bigTxt.name, type: 'TXT', edns: false });
    expect(tcp.rcode).toBe('NOERROR');
    expect(tcp.tc).toBe(false);
    expect(tcp.size).toBeGreaterThan(512);
    expect(txtOf(tcp.answers)).toEqual([...FIXTURE.bigTxt.strings]);
  });

  it('UDP with EDNS 1232: the whole RRset, no TC, and the reply advertises our UDP size', async () => {
    const reply = await query({ server: t.warden.dns, transport: 'udp', name: FIXTURE.bigTxt.name, type: 'TXT', edns: { udpSize: 1232 } });
    expect(reply.rcode).toBe('NOERROR');
    expect(reply.tc).toBe(false);
    expect(reply.size).toBeGreaterThan(512);
    expect(reply.size).toBeLessThanOrEqual(1232);
    expect(txtOf(reply.answers)).toEqual([...FIXTURE.bigTxt.strings]);
    expect(reply.opt?.udpSize).toBe(1232);
  });

  it('an EDNS size below 512 is treated as 512 (RFC 6891 §6.2.5): TC=1 within 512 bytes', async () => {
    const reply = await query({ server: t.warden.dns, transport: 'udp', name: FIXTURE.bigTxt.name, type: 'TXT', edns: { udpSize: 256 } });
    expect(reply.rcode).toBe('NOERROR');
    expect(reply.tc).toBe(true);
    expect(reply.size).toBeLessThanOrEqual(512);
  });
});

describe('TXT bigger than 1232 bytes (the upstream itself truncates at EDNS 1232)', () => {
  it('UDP with EDNS 1232: TC=1 within 1232 bytes and the OPT kept; TCP then returns all 8 strings', async () => {
    const udp = await query({ server: t.warden.dns, transport: 'udp', name: FIXTURE.hugeTxt.name, type: 'TXT', edns: { udpSize: 1232 } });
    expect(udp.rcode).toBe('NOERROR');
    expect(udp.tc).toBe(true);
    expect(udp.size).toBeLessThanOrEqual(1232);
    expect(udp.opt).toBeDefined();

    const tcp = await query({ server: t.warden.dns, transport: 'tcp', name: FIXTURE.hugeTxt.name, type: 'TXT' });
    expect(tcp.rcode).toBe('NOERROR');
    expect(tcp.tc).toBe(false);
    expect(tcp.size).toBeGreaterThan(1232);
    expect(txtOf(tcp.answers)).toEqual([...FIXTURE.hugeTxt.strings]);
  });

  it('TCP first (nothing cached yet for this qtype/name): the resolver retries upstream over TCP on TC', async () => {
    const fresh = await startWarden({}, { upstream: t.upstream });
    try {
      const tcp = await query({ server: fresh.dns, transport: 'tcp', name: FIXTURE.hugeTxt.name, type: 'TXT' });
      expect(tcp.rcode).toBe('NOERROR');
      expect(tcp.tc).toBe(false);
      expect(txtOf(tcp.answers)).toEqual([...FIXTURE.hugeTxt.strings]);
    } finally {
      await fresh.close();
    }
  });
});

describe('EDNS details', () => {
  it('copies the DO bit into the reply (RFC 3225 §3)', async () => {
    const withDo = await query({ server: t.warden.dns, name: FIXTURE.a.name, type: 'A', edns: { udpSize: 1232, do: true } });
    expect(withDo.rcode).toBe('NOERROR');
    expect(withDo.opt?.do).toBe(true);
    const withoutDo = await query({ server: t.warden.dns, name: FIXTURE.a.name, type: 'A', edns: { udpSize: 1232, do: false } });
    expect(withoutDo.opt?.do).toBe(false);
  });

  it('advertises the configured server.udp_payload_size', async () => {
    const custom = await startWarden({ server: { udp_payload_size: 1400 } }, { upstream: t.upstream });
    try {
      const reply = await query({ server: custom.dns, name: FIXTURE.a.name, type: 'A', edns: { udpSize: 4096 } });
      expect(reply.rcode).toBe('NOERROR');
      expect(reply.opt?.udpSize).toBe(1400);
    } finally {
      await custom.close();
    }
  });

  it('an EDNS version other than 0 gets BADVERS (extended RCODE 16) with an OPT (RFC 6891 §6.1.3)', async () => {
    const q = encodeQuery({ id: 0x7711, name: FIXTURE.a.name, type: 'A' });
    q[q.length - 11 + 6] = 1; // the OPT record is last: TTL byte 2 is the EDNS version
    const raw = await sendRaw(q, { server: t.warden.dns, transport: 'udp', timeoutMs: 2000 });
    expect(raw).toBeDefined();
    const reply = decodeReply(raw!);
    expect(reply.id).toBe(0x7711);
    expect(reply.rcodeNumber).toBe(16);
    expect(reply.answers).toEqual([]);
    expect(reply.opt?.version).toBe(0);
  });

  it('a reply that fits in 512 bytes has no TC without EDNS', async () => {
    const reply = await query({ server: t.warden.dns, name: FIXTURE.cnameChain.name, type: 'A', edns: false });
    expect(reply.rcode).toBe('NOERROR');
    expect(reply.tc).toBe(false);
    expect(reply.answers).toHaveLength(4);
  });
});

describe('as a person would, with dig', () => {
  it('dig +noedns gets TC=1 and retries over TCP by itself, ending with the 4 strings', async () => {
    const out = await dig({ server: t.warden.dns, name: FIXTURE.bigTxt.name, type: 'TXT', args: ['+noedns'] });
    expect(out.exitCode).toBe(0);
    expect(out.truncatedRetry).toBe(true);
    expect(out.status).toBe('NOERROR');
    expect(out.transport).toBe('TCP');
    expect(out.answers).toHaveLength(4);
  });

  it('dig +noedns +ignore shows the tc flag', async () => {
    const out = await dig({ server: t.warden.dns, name: FIXTURE.bigTxt.name, type: 'TXT', args: ['+noedns', '+ignore'] });
    expect(out.status).toBe('NOERROR');
    expect(out.flags).toContain('tc');
  });
});
