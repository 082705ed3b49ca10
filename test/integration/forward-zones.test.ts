// Conditional forwarding (forward_zones) over real sockets: two NSD processes, the default upstream serving the
// fixture zones and a second one serving an internal zone the first does not know. Names at or below a forward
// zone go to its upstreams (with failover, cached like the rest); everything else goes to the default upstreams;
// forwarded names are still judged (rebinding here) unless the zone is in policy.allow.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { query } from '../helpers/dns-client.js';
import { closedPort, FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { startWarden, type PartialConfig, type Warden } from '../helpers/warden.js';
import { forwardZoneFor } from '../../src/dns/forward.js';
import { parseConfig } from '../../src/ops/config.js';
import { ConfigError } from '../../src/errors.js';

// Served only by the second NSD. `dc` points inside (a rebinding candidate if the zone were public).
const INTERNAL_ZONE = `$ORIGIN ad.example.net.
$TTL 300
@ 3600 IN SOA ns1.ad.example.net. hostmaster.ad.example.net. ( 1 3600 600 86400 60 )
@ 3600 IN NS ns1
ns1 IN A 192.0.2.53
www IN A 192.0.2.77
deep.sub IN A 192.0.2.78
dc IN A 10.1.2.3
`;

describe('forward_zones', () => {
  let dir: string;
  let main: Upstream;
  let internal: Upstream;
  const wardens: Warden[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dnswarden-fwd-'));
    const zoneFile = join(dir, 'ad.example.net.zone');
    writeFileSync(zoneFile, INTERNAL_ZONE);
    [main, internal] = await Promise.all([startUpstream(), startUpstream({ extraZones: { 'ad.example.net': zoneFile } })]);
  });
  afterAll(async () => {
    for (const w of wardens) await w.close();
    await Promise.all([main?.stop(), internal?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  async function warden(partial: PartialConfig): Promise<Warden> {
    const w = await startWarden(partial, { upstream: main });
    wardens.push(w);
    return w;
  }

  it('sends names at or below the zone to its upstreams and every other name to the default ones, cached alike', async () => {
    const w = await warden({ forward_zones: [{ name: 'AD.example.net.', upstreams: [{ address: internal.hostPort }] }] });
    const [mainBefore, internalBefore] = await Promise.all([main.queryCount(), internal.queryCount()]);

    const inZone = await query({ server: w.dns, name: 'www.ad.example.net', type: 'A' });
    expect(inZone.rcode).toBe('NOERROR');
    expect(inZone.answers.map((a) => a.data)).toEqual(['192.0.2.77']);
    const below = await query({ server: w.dns, name: 'Deep.Sub.ad.example.net', type: 'A' });
    expect(below.answers.map((a) => a.data)).toEqual(['192.0.2.78']);
    const apex = await query({ server: w.dns, name: 'ad.example.net', type: 'SOA' });
    expect(apex.rcode).toBe('NOERROR');
    expect(apex.answers).toHaveLength(1);
    expect(await internal.queryCount()).toBe(internalBefore + 3);

    // Not in the zone (a sibling, a name that only ends in the same letters): the default upstream.
    const other = await query({ server: w.dns, name: FIXTURE.a.name, type: 'A' });
    expect(other.answers.map((a) => a.data)).toEqual([FIXTURE.a.address]);
    const lookalike = await query({ server: w.dns, name: 'notad.example.net', type: 'A' });
    expect(lookalike.rcode).toBe('REFUSED'); // NSD is not authoritative for example.net: the default upstream answered
    expect(await main.queryCount()).toBe(mainBefore + 2);
    expect(await internal.queryCount()).toBe(internalBefore + 3);

    // Cached like any answer: the second ask does not reach the zone's upstream.
    const again = await query({ server: w.dns, name: 'www.ad.example.net', type: 'A' });
    expect(again.answers.map((a) => a.data)).toEqual(['192.0.2.77']);
    expect(await internal.queryCount()).toBe(internalBefore + 3);
  });

  it('fails over within the zone\'s upstreams, and the most specific zone wins', async () => {
    const dead = await closedPort();
    const w = await warden({
      forward_zones: [
        { name: 'example.net', upstreams: [{ address: main.hostPort }] },
        { name: 'ad.example.net', upstreams: [{ address: `127.0.0.1:${dead}`, timeout_ms: 300 }, { address: internal.hostPort }] },
      ],
    });
    const before = await internal.queryCount();
    const r = await query({ server: w.dns, name: 'www.ad.example.net', type: 'A', timeoutMs: 5000 });
    expect(r.rcode).toBe('NOERROR');
    expect(r.answers.map((a) => a.data)).toEqual(['192.0.2.77']);
    expect(await internal.queryCount()).toBe(before + 1);
  });

  it('still judges forwarded names: an inside address is blocked as rebinding until the zone is in policy.allow', async () => {
    const judged = await warden({ forward_zones: [{ name: 'ad.example.net', upstreams: [{ address: internal.hostPort }] }] });
    const blocked = await query({ server: judged.dns, name: 'dc.ad.example.net', type: 'A' });
    expect(blocked.rcode).toBe('NXDOMAIN');
    expect(blocked.ede?.code).toBe(15);
    expect(blocked.ede?.text).toContain('rebinding');

    const allowed = await warden({ forward_zones: [{ name: 'ad.example.net', upstreams: [{ address: internal.hostPort }] }], policy: { allow: ['ad.example.net'] } });
    const answered = await query({ server: allowed.dns, name: 'dc.ad.example.net', type: 'A' });
    expect(answered.rcode).toBe('NOERROR');
    expect(answered.answers.map((a) => a.data)).toEqual(['10.1.2.3']);
  });
});

describe('forward zone choice and config (pure)', () => {
  const zones = [{ name: 'example.net' }, { name: 'ad.example.net' }, { name: 'x.ad.example.net' }];
  it('picks the zone with the most labels that holds the name, the zone itself included', () => {
    expect(forwardZoneFor(zones, 'ad.example.net')?.name).toBe('ad.example.net');
    expect(forwardZoneFor(zones, 'a.b.ad.example.net')?.name).toBe('ad.example.net');
    expect(forwardZoneFor(zones, 'y.x.ad.example.net')?.name).toBe('x.ad.example.net');
    expect(forwardZoneFor(zones, 'www.example.net')?.name).toBe('example.net');
    expect(forwardZoneFor(zones, 'evilexample.net')).toBeUndefined();
    expect(forwardZoneFor(zones, 'bad.ad.example.net.evil')).toBeUndefined();
    expect(forwardZoneFor(zones, 'net')).toBeUndefined();
  });

  it('rejects a bad name, no upstreams, and a zone listed twice, naming the field', () => {
    const err = (raw: unknown): string => {
      try {
        parseConfig(raw);
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        return (e as Error).message;
      }
      throw new Error('expected a ConfigError');
    };
    expect(err({ forward_zones: [{ name: 'bad name', upstreams: [{ address: '10.0.0.53:53' }] }] })).toContain('forward_zones[0].name');
    expect(err({ forward_zones: [{ name: 'ad.example.com', upstreams: [] }] })).toContain('forward_zones[0].upstreams');
    expect(err({ forward_zones: [{ name: 'ad.example.com', upstreams: [{ address: 'dc1:53' }] }] })).toContain('forward_zones[0].upstreams[0].address');
    expect(err({ forward_zones: [{ name: 'a.test', upstreams: [{ address: '10.0.0.53:53' }] }, { name: 'A.test.', upstreams: [{ address: '10.0.0.54:53' }] }] })).toContain('forward_zones[1].name');
    expect(parseConfig({ forward_zones: [{ name: 'Ad.Example.com.', upstreams: [{ address: '10.0.0.53:53' }] }] }).forward_zones[0]!.name).toBe('ad.example.com');
  });
});
