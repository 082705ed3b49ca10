// policy.enabled: false (no scoring, no verdicts) over real sockets against a real NSD upstream: queries are
// answered as forwarded, an exfiltration-shaped name included, and the session's query history records
// them as answers (it used to say "refused" for every answered query when no verdict was made).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { query } from '../helpers/dns-client.js';
import { base32Label } from '../helpers/exfil.js';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { startWarden, TEST_SESSION, type Warden } from '../helpers/warden.js';

let upstream: Upstream;
let warden: Warden;

beforeAll(async () => {
  upstream = await startUpstream();
  warden = await startWarden({ policy: { enabled: false } }, { upstream });
});

afterAll(async () => {
  await warden?.close();
  await upstream?.stop();
});

interface HistoryRow { readonly name: string; readonly action: string; readonly rule: string; readonly rcode: number; readonly score?: number }

async function history(): Promise<HistoryRow[]> {
  const res = await warden.admin(`/v1/sessions/${TEST_SESSION.id}/queries`);
  expect(res.status).toBe(200);
  return (res.json as { queries: HistoryRow[] }).queries;
}

describe('policy disabled', () => {
  it('answers every query as forwarded and records each as an answer in the session history', async () => {
    const plain = await query({ server: warden.dns, name: FIXTURE.a.name, type: 'A' });
    expect(plain.rcode).toBe('NOERROR');
    expect(plain.answers.map((a) => a.data)).toContain(FIXTURE.a.address);
    // An exfiltration-shaped name is not judged: the upstream's own answer (NXDOMAIN) comes back, no EDE of ours.
    const exfil = `${base32Label('policy-disabled')}.${base32Label('policy-disabled-2')}.${FIXTURE.zone}`;
    const tunnel = await query({ server: warden.dns, name: exfil, type: 'TXT' });
    expect(tunnel.rcode).toBe('NXDOMAIN');
    expect(tunnel.ede).toBeUndefined();
    const missing = await query({ server: warden.dns, name: `nosuch.${FIXTURE.zone}`, type: 'A' });
    expect(missing.rcode).toBe('NXDOMAIN');

    const rows = await history();
    const row = (name: string) => rows.find((r) => r.name === name);
    expect(row(FIXTURE.a.name)).toMatchObject({ action: 'answer', rule: 'none', rcode: 0 });
    expect(row(exfil)).toMatchObject({ action: 'answer', rule: 'none', rcode: 3 });
    expect(row(`nosuch.${FIXTURE.zone}`)).toMatchObject({ action: 'answer', rule: 'none', rcode: 3 });
    for (const r of rows) expect(r.score).toBeUndefined();
  });
});
