// Issue 4, the analyst's path over real sockets and the real CLI process:
// exfiltration from a batch session → blocked (EDE 15) → quarantined → the alert reaches a real HTTP
// receiver (JSON and Alertmanager formats) → `dnswarden quarantine show` (the built CLI, spawned) shows the
// evidence → release → the session is answered again at once → audit entries name the analyst.
// And: confirm with deny_domains puts the attacker's domain on the learned deny list, so another session's
// query to it is blocked (EDE 17).
// Needs `npm run build` first (npm test does it): the CLI is dist/src/cli.js.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { query, type DnsReply } from '../helpers/dns-client.js';
import { startWarden, TEST_SESSION, type Warden } from '../helpers/warden.js';
import { base32Label } from '../helpers/exfil.js';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'dist/src/cli.js');
const ANALYST_TOKEN = 'analyst-alice-token-0123456789abcdef';

const BATCH = { id: 'batch-agent', addresses: ['127.0.0.2/32'], type: 'batch', user: 'ci-bot', role: 'builder' } as const;
const BATCH2 = { id: 'batch-agent-2', addresses: ['127.0.0.4/32'], type: 'batch', user: 'etl-bot', role: 'loader' } as const;

// --- a real HTTP receiver for the webhooks

interface Received {
  readonly path: string;
  readonly body: unknown;
}
let receiver: Server;
let receiverUrl: string;
const received: Received[] = [];

async function startReceiver(): Promise<void> {
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        body = Buffer.concat(chunks).toString('utf8');
      }
      received.push({ path: req.url ?? '', body });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((ok) => receiver.listen(0, '127.0.0.1', ok));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}`;
}

interface JsonEvent {
  id: string;
  type: string;
  quarantine: { id: string; sessionId: string; user: string; role: string; sessionType: string; state: string; trigger: { name: string; rule: string } };
  actor?: string;
  reason?: string;
}
const jsonEvents = (): JsonEvent[] => received.filter((r) => r.path === '/hook').map((r) => r.body as JsonEvent);
interface AmAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  startsAt: string;
  endsAt?: string;
}
const amAlerts = (): AmAlert[] => received.filter((r) => r.path === '/am/api/v2/alerts').flatMap((r) => r.body as AmAlert[]);

async function until<T>(what: string, probe: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received: ${JSON.stringify(received)}`);
    await new Promise((ok) => setTimeout(ok, 50));
  }
}

// --- DNS helpers

interface ExfilRun {
  readonly replies: DnsReply[];
  readonly names: string[];
  readonly quarantineId: string;
}

/** Sends base32-label TXT queries for `domain` from `bind` until one says "session quarantined" (at most 8). */
async function exfiltrate(warden: Warden, bind: string, domain: string): Promise<ExfilRun> {
  const replies: DnsReply[] = [];
  const names: string[] = [];
  for (let i = 0; i < 8; i++) {
    const name = `${base32Label(`${domain}-${i}`)}.${domain}`;
    names.push(name);
    const reply = await query({ server: warden.dns, bind, name, type: 'TXT' });
    replies.push(reply);
    const m = /^session quarantined \((qr-[^)]+)\)/.exec(reply.ede?.text ?? '');
    if (m !== null) return { replies, names, quarantineId: m[1]! };
  }
  throw new Error(`no quarantine after 8 exfiltration queries from ${bind}: ${JSON.stringify(replies.map((r) => [r.rcode, r.ede]))}`);
}

// --- the built CLI

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}
let cliCwd: string;

function cli(args: string[], token: string | undefined = ANALYST_TOKEN): Promise<CliResult> {
  const env: Record<string, string> = { PATH: process.env['PATH'] ?? '/usr/bin:/bin' };
  const full = [CLI, ...args, '--url', warden.adminUrl, ...(token !== undefined ? ['--token', token] : [])];
  return new Promise((ok) => {
    execFile(process.execPath, full, { cwd: cliCwd, env, timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1;
      ok({ code, stdout, stderr });
    });
  });
}

let upstream: Upstream;
let warden: Warden;

beforeAll(async () => {
  await startReceiver();
  upstream = await startUpstream();
  cliCwd = mkdtempSync(join(tmpdir(), 'dnswarden-cli-')); // no data/admin-token here: the CLI uses --token only
  warden = await startWarden({
    admin: { tokens: [{ name: 'alice', kind: 'analyst', token: ANALYST_TOKEN }] },
    sessions: { static: [{ ...TEST_SESSION, addresses: [...TEST_SESSION.addresses] }, { ...BATCH, addresses: [...BATCH.addresses] }, { ...BATCH2, addresses: [...BATCH2.addresses] }] },
    alerts: {
      webhooks: [{ url: `${receiverUrl}/hook`, format: 'json' }, { url: `${receiverUrl}/am`, format: 'alertmanager' }],
      retry_initial_ms: 50,
      retry_max_ms: 500,
    },
  }, { upstream });
});

afterAll(async () => {
  await warden?.close();
  await upstream?.stop();
  await new Promise<void>((ok) => (receiver === undefined ? ok() : receiver.close(() => ok())));
  if (cliCwd !== undefined) rmSync(cliCwd, { recursive: true, force: true });
});

describe('exfiltration → quarantine → alert → CLI show → release → answered again', () => {
  let run: ExfilRun;

  it('answers the batch session normally before anything happens', async () => {
    const reply = await query({ server: warden.dns, bind: '127.0.0.2', name: FIXTURE.a.name, type: 'A' });
    expect(reply.rcode).toBe('NOERROR');
    expect(reply.answers.map((a) => a.data)).toEqual([FIXTURE.a.address]);
  });

  it('blocks 63-character base32 labels with EDE 15 naming the rule, and then quarantines the session', async () => {
    run = await exfiltrate(warden, '127.0.0.2', 'exfil-attacker.test');
    const first = run.replies[0]!;
    expect(first.rcode).toBe('NXDOMAIN');
    expect(first.ede?.code).toBe(15);
    // the per-query block names its rule, its score with the top signals, and an event id
    expect(first.ede?.text).toMatch(/^threshold: score \d\.\d\d: .*name_length.* \([0-9a-f]{8}-[0-9a-z]+\)$/);
    const last = run.replies.at(-1)!;
    expect(last.rcode).toBe('NXDOMAIN');
    expect(last.ede?.code).toBe(15);
    expect(last.ede?.text).toMatch(/^session quarantined \(qr-[0-9a-f]{8}-[0-9a-z]+\): /);
    expect(run.replies.length).toBeGreaterThanOrEqual(2); // blocked first, quarantined after
    expect(run.replies.length).toBeLessThanOrEqual(4);
  });

  it('a quarantined session gets NXDOMAIN for everything, even ordinary names; other sessions do not', async () => {
    const blocked = await query({ server: warden.dns, bind: '127.0.0.2', name: FIXTURE.a.name, type: 'A' });
    expect(blocked.rcode).toBe('NXDOMAIN');
    expect(blocked.ede).toEqual({ code: 15, text: `session quarantined (${run.quarantineId})` });
    const other = await query({ server: warden.dns, bind: '127.0.0.1', name: FIXTURE.a.name, type: 'A' });
    expect(other.rcode).toBe('NOERROR');
  });

  it('delivers the quarantine_raised event to the JSON webhook, with the session and the trigger', async () => {
    const event = await until('quarantine_raised on /hook', () => jsonEvents().find((e) => e.type === 'quarantine_raised' && e.quarantine.id === run.quarantineId));
    expect(event.id).toBe(`${run.quarantineId}:quarantine_raised`);
    expect(event.quarantine).toMatchObject({ id: run.quarantineId, sessionId: 'batch-agent', user: 'ci-bot', role: 'builder', sessionType: 'batch', state: 'open' });
    expect(event.quarantine.trigger.name).toBe(run.names.at(-1));
  });

  it('delivers it to the Alertmanager receiver at /api/v2/alerts as a firing alert', async () => {
    const alert = await until('an Alertmanager alert', () => amAlerts().find((a) => a.labels['quarantine_id'] === run.quarantineId));
    expect(alert.labels).toMatchObject({ alertname: 'DnswardenQuarantine', severity: 'critical', session_type: 'batch', session: 'batch-agent', user: 'ci-bot' });
    expect(alert.annotations['event']).toBe('quarantine_raised');
    expect(alert.endsAt).toBeUndefined();
  });

  it('`dnswarden quarantine list --state open` lists it', async () => {
    const r = await cli(['quarantine', 'list', '--state', 'open']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const row = r.stdout.split('\n').find((l) => l.startsWith(run.quarantineId));
    expect(row).toMatch(new RegExp(`^${run.quarantineId}\\s+open\\s+\\S+ \\S+\\s+batch-agent\\s+ci-bot\\s+batch\\s+`));
  });

  it('`dnswarden quarantine show ID` prints the session, the trigger, every signal and the recent queries', async () => {
    const r = await cli(['quarantine', 'show', run.quarantineId]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toMatch(new RegExp(`^quarantine ${run.quarantineId}  state open  raised \\d{4}-\\d\\d-\\d\\d `));
    expect(lines[1]).toBe('session    batch-agent  user ci-bot  role builder  type batch  addresses 127.0.0.2/32');
    expect(lines[2]).toMatch(new RegExp(`^trigger    ${run.names.at(-1)!.replace(/\./g, '\\.')} \\(TXT\\)  rule \\w+: .+  score \\d\\.\\d\\d$`));
    expect(lines[3]).toBe('domains    exfil-attacker.test');
    const signalsAt = lines.indexOf('signals');
    expect(lines[signalsAt + 1]).toMatch(/^SIGNAL\s+VALUE\s+WEIGHT\s+REASON$/);
    const signalRows = lines.slice(signalsAt + 2, lines.indexOf('', signalsAt + 2)).map((l) => l.split(/\s+/)[0]);
    for (const id of ['label_entropy', 'name_length', 'char_class', 'qtype']) expect(signalRows).toContain(id);
    // the recent queries include the ordinary one before and every exfiltration query
    const recentAt = lines.indexOf('recent queries (oldest first)');
    const recent = lines.slice(recentAt + 2).join('\n');
    expect(recent).toContain(FIXTURE.a.name);
    for (const name of run.names.slice(0, -1)) expect(recent).toContain(name);
  });

  it('`--json` gives the same evidence as data', async () => {
    const r = await cli(['quarantine', 'show', run.quarantineId, '--json']);
    expect(r.code).toBe(0);
    const body = JSON.parse(r.stdout) as { quarantine: { id: string; state: string; session: { id: string }; evidence: { trigger: { name: string; signals: { id: string; value: number }[] } } }; attacker_domains: string[] };
    expect(body.quarantine).toMatchObject({ id: run.quarantineId, state: 'open', session: { id: 'batch-agent' } });
    expect(body.quarantine.evidence.trigger.name).toBe(run.names.at(-1));
    expect(body.quarantine.evidence.trigger.signals.find((s) => s.id === 'name_length')?.value).toBeGreaterThan(0.5);
    expect(body.attacker_domains).toEqual(['exfil-attacker.test']);
  });

  it('`dnswarden quarantine release` lifts the block at once', async () => {
    const r = await cli(['quarantine', 'release', run.quarantineId, '--reason', 'false positive: test fixture']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`quarantine ${run.quarantineId} is now released\n`);
    const reply = await query({ server: warden.dns, bind: '127.0.0.2', name: FIXTURE.a.name, type: 'A' });
    expect(reply.rcode).toBe('NOERROR');
    expect(reply.answers.map((a) => a.data)).toEqual([FIXTURE.a.address]);
    const tcp = await query({ server: warden.dns, bind: '127.0.0.2', transport: 'tcp', name: FIXTURE.txt.name, type: 'TXT' });
    expect(tcp.rcode).toBe('NOERROR');
  });

  it('the API shows it released by the analyst, and a second release is refused in one line', async () => {
    const res = await warden.admin(`/v1/quarantines/${run.quarantineId}`);
    expect(res.status).toBe(200);
    expect((res.json as { quarantine: unknown }).quarantine).toMatchObject({ state: 'released', decided_by: 'alice', decision_reason: 'false positive: test fixture' });
    const again = await cli(['quarantine', 'release', run.quarantineId, '--reason', 'again']);
    expect(again.code).not.toBe(0);
    expect(again.stdout).toBe('');
    expect(again.stderr.trim().split('\n')).toHaveLength(1);
    expect(again.stderr).toContain('already released');
  });

  it('the audit log has the release with actor and reason (API and `dnswarden audit`)', async () => {
    const res = await warden.admin('/v1/audit');
    const audit = (res.json as { audit: { actor: string; action: string; target: string; reason: string }[] }).audit;
    expect(audit).toContainEqual(expect.objectContaining({ actor: 'alice', action: 'quarantine.release', target: run.quarantineId, reason: 'false positive: test fixture' }));
    const r = await cli(['audit']);
    expect(r.code).toBe(0);
    expect(r.stdout.split('\n')[0]).toMatch(/^TIME\s+ACTOR\s+ACTION\s+TARGET\s+REASON$/);
    expect(r.stdout).toMatch(new RegExp(`alice\\s+quarantine\\.release\\s+${run.quarantineId}\\s+false positive: test fixture`));
  });

  it('delivers the release: JSON event after the raised one (each once), Alertmanager alert resolved', async () => {
    await until('quarantine_released on /hook', () => jsonEvents().find((e) => e.type === 'quarantine_released' && e.quarantine.id === run.quarantineId));
    const mine = jsonEvents().filter((e) => e.quarantine.id === run.quarantineId);
    expect(mine.map((e) => e.type)).toEqual(['quarantine_raised', 'quarantine_released']);
    expect(mine[1]).toMatchObject({ id: `${run.quarantineId}:quarantine_released`, actor: 'alice', reason: 'false positive: test fixture' });
    const resolved = await until('a resolved Alertmanager alert', () => amAlerts().find((a) => a.labels['quarantine_id'] === run.quarantineId && a.endsAt !== undefined));
    expect(resolved.annotations['event']).toBe('quarantine_released');
    expect(Date.parse(resolved.endsAt!)).toBeGreaterThanOrEqual(Date.parse(resolved.startsAt));
  });

  it('`dnswarden sessions queries` shows the session answered again after the release', async () => {
    const r = await cli(['sessions', 'queries', 'batch-agent', '--json']);
    expect(r.code).toBe(0);
    const queries = (JSON.parse(r.stdout) as { queries: { name: string; action: string; rule: string; rcode: number }[] }).queries;
    const last = queries.at(-1)!;
    expect(last).toMatchObject({ name: FIXTURE.txt.name, action: 'answer', rcode: 0 });
    expect(queries.some((q) => q.rule === 'quarantined' && q.rcode === 3)).toBe(true);
  });
});

describe('confirm with deny_domains: the attacker domain is blocked for every session (EDE 17)', () => {
  let run: ExfilRun;

  it('another session is answered for the domain before the confirmation (NSD: REFUSED, not ours)', async () => {
    run = await exfiltrate(warden, '127.0.0.4', 'stolen-data.test');
    const before = await query({ server: warden.dns, bind: '127.0.0.1', name: 'www.stolen-data.test', type: 'A' });
    // the upstream is not authoritative for it; what matters is that dnswarden does not block it (no EDE 17)
    expect(before.edes.map((e) => e.code)).not.toContain(17);
  });

  it('`dnswarden quarantine confirm ID --deny --yes` confirms and names the denied domain', async () => {
    const r = await cli(['quarantine', 'confirm', run.quarantineId, '--reason', 'confirmed exfil to stolen-data.test', '--deny', '--yes']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`quarantine ${run.quarantineId} is now confirmed; denied for everyone: stolen-data.test\n`);
  });

  it('another session querying that domain now gets NXDOMAIN + EDE 17 (Filtered)', async () => {
    for (const name of ['www.stolen-data.test', 'stolen-data.test', 'a.b.stolen-data.test']) {
      const reply = await query({ server: warden.dns, bind: '127.0.0.1', name, type: 'A' });
      expect(reply.rcode, name).toBe('NXDOMAIN');
      expect(reply.ede?.code, name).toBe(17);
      expect(reply.ede?.text, name).toMatch(/^learned_deny: domain confirmed as exfiltration in a quarantine \(/);
    }
    const unrelated = await query({ server: warden.dns, bind: '127.0.0.1', name: FIXTURE.a.name, type: 'A' });
    expect(unrelated.rcode).toBe('NOERROR');
  });

  it('the confirmed session stays quarantined', async () => {
    const reply = await query({ server: warden.dns, bind: '127.0.0.4', name: FIXTURE.a.name, type: 'A' });
    expect(reply.rcode).toBe('NXDOMAIN');
    expect(reply.ede).toEqual({ code: 15, text: `session quarantined (${run.quarantineId})` });
  });

  it('the learned deny list and the audit log show it, with the analyst as actor', async () => {
    const r = await cli(['deny', 'list', '--json']);
    expect(r.code).toBe(0);
    const domains = (JSON.parse(r.stdout) as { domains: { domain: string; addedBy: string; quarantineId: string | null }[] }).domains;
    expect(domains).toContainEqual(expect.objectContaining({ domain: 'stolen-data.test', addedBy: 'alice', quarantineId: run.quarantineId }));
    const audit = ((await warden.admin('/v1/audit')).json as { audit: { actor: string; action: string; target: string }[] }).audit;
    expect(audit).toContainEqual(expect.objectContaining({ actor: 'alice', action: 'quarantine.confirm', target: run.quarantineId }));
    expect(audit).toContainEqual(expect.objectContaining({ actor: 'alice', action: 'deny.add', target: 'stolen-data.test' }));
  });

  it('delivers quarantine_confirmed to the JSON webhook', async () => {
    const event = await until('quarantine_confirmed on /hook', () => jsonEvents().find((e) => e.type === 'quarantine_confirmed' && e.quarantine.id === run.quarantineId));
    expect(event).toMatchObject({ id: `${run.quarantineId}:quarantine_confirmed`, actor: 'alice', reason: 'confirmed exfil to stolen-data.test' });
    expect(event.quarantine.state).toBe('confirmed');
  });

  it('removing the domain from the learned deny list (`dnswarden deny remove`) unblocks it for the other session', async () => {
    const r = await cli(['deny', 'remove', 'stolen-data.test', '--reason', 'test cleanup']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('stolen-data.test removed from the learned deny list\n');
    const reply = await query({ server: warden.dns, bind: '127.0.0.1', name: 'www.stolen-data.test', type: 'A' });
    expect(reply.edes.map((e) => e.code)).not.toContain(17);
  });
});
