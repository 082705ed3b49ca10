// POST /v1/deny, the hand-added learned deny, over real HTTP and DNS sockets: a body that is not a JSON
// object is a 400 with the JSON error shape (was a 500); a public suffix ("co.uk") is refused, so one
// entry cannot block every name under it; a hand-added entry blocks with an EDE text that says it was
// added by hand (not "confirmed as exfiltration", which is for entries confirmed from a quarantine).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { query } from '../helpers/dns-client.js';
import { startWarden, type Warden } from '../helpers/warden.js';

let upstream: Upstream;
let warden: Warden;

beforeAll(async () => {
  upstream = await startUpstream();
  warden = await startWarden({ policy: { mode: 'enforce' } }, { upstream });
});

afterAll(async () => {
  await warden?.close();
  await upstream?.stop();
});

const listed = async (): Promise<string[]> => ((await warden.admin('/v1/deny')).json as { domains: { domain: string }[] }).domains.map((e) => e.domain);

describe('POST /v1/deny input', () => {
  it.each([['null', 'null'], ['an array', '[]'], ['a string', '"example.com"'], ['a number', '42']])('a body that is %s → 400 with the JSON error shape', async (_what, body) => {
    const res = await warden.admin('/v1/deny', { method: 'POST', body });
    expect(res.status, res.text).toBe(400);
    expect(res.json).toEqual({ error: { code: 'ERR_BAD_REQUEST', message: expect.stringMatching(/JSON object/) } });
  });

  it('null is a 400 on confirm and release too (the same body handling)', async () => {
    for (const path of ['/v1/quarantines/qr-none/confirm', '/v1/quarantines/qr-none/release']) {
      const res = await warden.admin(path, { method: 'POST', body: 'null' });
      expect(res.status, `${path}: ${res.text}`).toBe(400);
      expect((res.json as { error: { code: string } }).error.code).toBe('ERR_BAD_REQUEST');
    }
  });

  it.each(['co.uk', 'CO.UK', 'gov.uk', 'com.au'])('a public suffix ("%s") → 400, and nothing is denied', async (domain) => {
    const res = await warden.admin('/v1/deny', { method: 'POST', body: { domain, reason: 'too broad' } });
    expect(res.status, res.text).toBe(400);
    expect((res.json as { error: { code: string; message: string } }).error).toEqual({ code: 'ERR_BAD_REQUEST', message: expect.stringMatching(/public suffix/) });
    expect(await listed()).not.toContain(domain.toLowerCase());
    const reply = await query({ server: warden.dns, bind: '127.0.0.1', name: `www.example.${domain.toLowerCase()}`, type: 'A' });
    expect(reply.edes.map((e) => e.code)).not.toContain(17);
  });

  it('a registrable domain under a multi-label suffix (example.co.uk) is accepted', async () => {
    const res = await warden.admin('/v1/deny', { method: 'POST', body: { domain: 'Example.co.uk', reason: 'seen in a report' } });
    expect(res.status, res.text).toBe(201);
    expect(res.json).toEqual({ domain: 'example.co.uk' });
    expect(await listed()).toContain('example.co.uk');
  });
});

describe('a hand-added deny entry blocks with an EDE text saying so', () => {
  it('NXDOMAIN + EDE 17 "learned_deny: domain denied by hand by an analyst (…)" for the domain and names below it', async () => {
    const res = await warden.admin('/v1/deny', { method: 'POST', body: { domain: 'hand-denied.test', reason: 'threat intel feed' } });
    expect(res.status, res.text).toBe(201);
    for (const name of ['hand-denied.test', 'www.hand-denied.test']) {
      const reply = await query({ server: warden.dns, bind: '127.0.0.1', name, type: 'A' });
      expect(reply.rcode, name).toBe('NXDOMAIN');
      expect(reply.ede?.code, name).toBe(17);
      expect(reply.ede?.text, name).toMatch(/^learned_deny: domain denied by hand by an analyst \(/);
      expect(reply.ede?.text, name).not.toMatch(/confirmed/);
    }
  });
});
