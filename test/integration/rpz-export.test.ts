// Issue 16 part A item 4: GET /v1/rpz serves the deny list and the learned deny list as an RPZ zone
// (text/dns) that BIND's named-checkzone loads; its SOA serial holds while the lists hold and rises when
// they change (kept in the store); viewers may read it, runtime tokens may not.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { loadRpzZone, RpzSet } from '../../src/zones/rpz.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startWarden } from '../helpers/warden.js';

const VIEWER = 'viewer-token-0123456789abcdef';
const RUNTIME = 'runtime-token-0123456789abcdef';

let upstream: Upstream;
let dir: string;
beforeAll(async () => {
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'dnswarden-rpz-export-'));
});
afterAll(async () => {
  await upstream?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

const serialOf = (zone: string): number => Number(/^@ SOA \S+ \S+ (\d+) /m.exec(zone)?.[1]);

function checkzone(text: string, name: string): { status: number | null; output: string } {
  const file = join(dir, name);
  writeFileSync(file, text);
  const run = spawnSync('named-checkzone', ['dnswarden.rpz', file], { encoding: 'utf8', timeout: 20_000 });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

describe('GET /v1/rpz', () => {
  it('the deny lists as an RPZ zone named-checkzone loads, with a serial that rises only when they change', async () => {
    const warden = await startWarden({
      policy: { deny: ['evil.example', 'tunnel.test'], deny_public_resolvers: false },
      admin: { tokens: [{ name: 'dash', kind: 'viewer', token: VIEWER }, { name: 'rt', kind: 'runtime', token: RUNTIME }] },
    }, { upstream });
    onTestFinished(() => warden.close());

    const first = await warden.admin('/v1/rpz', { token: VIEWER });
    expect(first.status).toBe(200);
    expect(first.headers.get('content-type')).toBe('text/dns');
    expect(first.text).toContain('evil.example CNAME .');
    expect(first.text).toContain('*.tunnel.test CNAME .');
    const check1 = checkzone(first.text, 'first.rpz');
    expect(check1.status, check1.output).toBe(0);
    expect(check1.output).toMatch(/loaded serial \d+/);
    const serial1 = serialOf(first.text);
    expect(serial1).toBeGreaterThan(0);

    // No change, no new serial.
    expect(serialOf((await warden.admin('/v1/rpz', { token: VIEWER })).text)).toBe(serial1);

    // A learned deny entry: in the zone, and the serial rises.
    expect((await warden.admin('/v1/deny', { method: 'POST', body: { domain: 'exfil-c2.example', reason: 'seen in incident 7' } })).status).toBe(201);
    const second = await warden.admin('/v1/rpz', { token: VIEWER });
    expect(second.text).toContain('exfil-c2.example CNAME .');
    expect(second.text).toContain('; learned deny, added by admin: seen in incident 7');
    const serial2 = serialOf(second.text);
    expect(serial2).toBeGreaterThan(serial1);
    const check2 = checkzone(second.text, 'second.rpz');
    expect(check2.status, check2.output).toBe(0);
    expect(check2.output).toContain(`loaded serial ${serial2}`);

    // Our own RPZ reader applies it as NXDOMAIN for the name and below.
    const set = new RpzSet([loadRpzZone('dnswarden.rpz', join(dir, 'second.rpz'))]);
    expect(set.match('a.b.exfil-c2.example')?.action.kind).toBe('nxdomain');
    expect(set.match('evil.example')?.action.kind).toBe('nxdomain');
    expect(set.match('fine.example')).toBeUndefined();

    // Removed again: the serial still rises (it never goes back).
    expect((await warden.admin('/v1/deny/exfil-c2.example?reason=done', { method: 'DELETE' })).status).toBe(204);
    const third = await warden.admin('/v1/rpz', { token: VIEWER });
    expect(third.text).not.toContain('exfil-c2.example');
    expect(serialOf(third.text)).toBeGreaterThan(serial2);

    expect((await warden.admin('/v1/rpz', { token: RUNTIME })).status).toBe(403);
    expect((await warden.admin('/v1/rpz', { token: null })).status).toBe(401);
  });

  it('lists the public resolvers and the DoH canary while deny_public_resolvers is on; the serial survives a restart', async () => {
    const partial = { policy: { deny: [] } };
    const warden = await startWarden(partial, { upstream });
    const zone = (await warden.admin('/v1/rpz')).text;
    expect(zone).toContain('dns.google CNAME .');
    expect(zone).toContain('use-application-dns.net CNAME .');
    expect(checkzone(zone, 'public.rpz').status).toBe(0);
    const serial = serialOf(zone);
    // Same storage dir, same lists → same serial after a restart.
    const storageDir = warden.storageDir;
    await warden.app.close();
    const again = await startWarden({ ...partial, storage: { dir: storageDir } }, { upstream });
    onTestFinished(async () => { await again.close(); rmSync(storageDir, { recursive: true, force: true }); });
    expect(serialOf((await again.admin('/v1/rpz')).text)).toBe(serial);
  });
});
