// Issue 4, item 3: the alert outbox is durable. The built CLI runs `dnswarden serve --config FILE`
// with a JSON webhook whose receiver is down: quarantine events queue (and are retried); the server is
// killed with SIGKILL; it restarts and queues one more; then the receiver comes up on that port and gets
// every event, in order, each exactly once. The receiver dedupes by the event `id` as the README tells
// receivers to; here no event can have been delivered before the kill (the receiver was down), so the raw
// stream must have no duplicate either.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE, freePort, startUpstream, type Upstream } from '../helpers/upstream.js';
import { exited, spawnServe, waitAdmin } from '../helpers/serve-process.js';
import { query, type DnsReply } from '../helpers/dns-client.js';
import { metricValue } from '../helpers/warden.js';
import { base32Label } from '../helpers/exfil.js';

const ADMIN_TOKEN = 'outbox-test-admin-token-0123456789';

let upstream: Upstream;
let dir: string;
let configPath: string;
let dnsPort: number;
let adminPort: number;
let receiverPort: number;
let child: ChildProcess | undefined;
let output = '';
let receiver: Server | undefined;
const received: { id: string; type: string; quarantine: { id: string; sessionId: string } }[] = [];

const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

function serve(): ChildProcess {
  return spawnServe(configPath, dir, (text) => void (output += text));
}

/** Waits until the server answers DNS, then until its admin API answers (it starts after the DNS listeners). */
async function waitAnswering(timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    if (Date.now() >= deadline) throw new Error(`dnswarden did not answer within ${timeoutMs} ms; last: ${String(last)}\n${output}`);
    if (child !== undefined && child.exitCode !== null) throw new Error(`serve exited with ${child.exitCode}:\n${output}`);
    try {
      const reply = await query({ server: { address: '127.0.0.1', port: dnsPort }, name: FIXTURE.a.name, type: 'A', timeoutMs: 500 });
      if (reply.rcode === 'NOERROR') break;
      last = reply.rcode;
    } catch (err) {
      last = err;
    }
    await sleep(100);
  }
  await waitAdmin(adminPort, child!, () => output, timeoutMs);
}

/** Exfiltration-shaped TXT queries from `bind` until its session is quarantined (at most 8); the quarantine id. */
async function quarantine(bind: string): Promise<string> {
  const replies: DnsReply[] = [];
  for (let i = 0; i < 8; i++) {
    const reply = await query({ server: { address: '127.0.0.1', port: dnsPort }, bind, name: `${base32Label(`${bind}-${i}`)}.outbox-exfil.test`, type: 'TXT' });
    replies.push(reply);
    const m = /^session quarantined \((qr-[^)]+)\)/.exec(reply.ede?.text ?? '');
    if (m !== null) return m[1]!;
  }
  throw new Error(`no quarantine from ${bind}: ${JSON.stringify(replies.map((r) => [r.rcode, r.ede]))}`);
}

async function admin(path: string, init: { method?: string; body?: unknown } = {}): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${adminPort}${path}`, {
    method: init.method ?? 'GET',
    headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(init.body !== undefined ? { body: JSON.stringify(init.body) } : {}),
    signal: AbortSignal.timeout(5000),
  });
  return { status: res.status, text: await res.text() };
}

async function metric(name: string): Promise<number | undefined> {
  return metricValue((await admin('/metrics')).text, name);
}

async function startReceiver(): Promise<void> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push(JSON.parse(Buffer.concat(chunks).toString('utf8')) as (typeof received)[number]);
      res.writeHead(204);
      res.end();
    });
  });
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(receiverPort, '127.0.0.1', () => ok());
  });
  receiver = server;
}

beforeAll(async () => {
  upstream = await startUpstream();
  dir = mkdtempSync(join(tmpdir(), 'dnswarden-outbox-'));
  configPath = join(dir, 'dnswarden.yaml');
  dnsPort = await freePort();
  adminPort = await freePort();
  receiverPort = await freePort(); // nothing listens here until the receiver starts
  writeFileSync(configPath, stringify({
    listen: { dns: [`127.0.0.1:${dnsPort}`], admin: `127.0.0.1:${adminPort}` },
    admin: { token: ADMIN_TOKEN },
    storage: { dir: join(dir, 'data') },
    upstreams: [{ address: upstream.hostPort, timeout_ms: 1000 }],
    sessions: {
      static: [
        { id: 'outbox-local', addresses: ['127.0.0.1/32'], type: 'interactive', user: 'tester', role: 'developer' },
        { id: 'outbox-a', addresses: ['127.0.0.2/32'], type: 'batch', user: 'bot-a', role: 'agent' },
        { id: 'outbox-b', addresses: ['127.0.0.3/32'], type: 'batch', user: 'bot-b', role: 'agent' },
        { id: 'outbox-c', addresses: ['127.0.0.4/32'], type: 'batch', user: 'bot-c', role: 'agent' },
      ],
    },
    alerts: { webhooks: [{ url: `http://127.0.0.1:${receiverPort}/hook`, format: 'json', timeout_ms: 1000 }], retry_initial_ms: 100, retry_max_ms: 400 },
    logging: { level: 'warn' },
  }));
});

afterAll(async () => {
  if (child !== undefined && child.exitCode === null && child.signalCode === null) {
    child.kill('SIGKILL');
    await exited(child, 5000).catch(() => undefined);
  }
  await new Promise<void>((ok) => (receiver === undefined ? ok() : receiver.close(() => ok())));
  await upstream?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('alert outbox across kill -9', () => {
  const expected: string[] = []; // event ids in the order they were raised

  it('with the receiver down, events queue in the outbox and delivery is retried', async () => {
    child = serve();
    await waitAnswering();
    const a = await quarantine('127.0.0.2');
    const b = await quarantine('127.0.0.3');
    const release = await admin(`/v1/quarantines/${a}/release`, { method: 'POST', body: { reason: 'outbox test' } });
    expect(release.status, release.text).toBe(200);
    expected.push(`${a}:quarantine_raised`, `${b}:quarantine_raised`, `${a}:quarantine_released`);
    expect(await metric('dnswarden_alerts_pending')).toBe(3);
    // retried with backoff while the receiver is down (bounded wait for the first failed attempt)
    const deadline = Date.now() + 5000;
    while (((await metric('dnswarden_alert_failures_total')) ?? 0) === 0 && Date.now() < deadline) await sleep(100);
    // (labelled counters have no sample before their first increment: absent counts as 0)
    expect((await metric('dnswarden_alert_failures_total')) ?? 0, 'no delivery attempt while the receiver was down').toBeGreaterThan(0);
    expect((await metric('dnswarden_alerts_delivered_total')) ?? 0).toBe(0);
    expect(received).toEqual([]);
  });

  it('kill -9, restart: the queued events are still there, and a new one joins the queue', async () => {
    child!.kill('SIGKILL');
    expect((await exited(child!, 5000)).signal).toBe('SIGKILL');
    child = serve();
    await waitAnswering();
    expect(await metric('dnswarden_alerts_pending')).toBe(3);
    const c = await quarantine('127.0.0.4');
    expected.push(`${c}:quarantine_raised`);
    expect(await metric('dnswarden_alerts_pending')).toBe(4);
    expect(received).toEqual([]);
  });

  it('receiver up: every event arrives, in order, none twice', async () => {
    await startReceiver();
    const deadline = Date.now() + 20_000;
    while (new Set(received.map((e) => e.id)).size < expected.length && Date.now() < deadline) await sleep(100);
    await sleep(1000); // a duplicate would arrive right behind
    const deduped = received.filter((e, i) => received.findIndex((f) => f.id === e.id) === i);
    expect(deduped.map((e) => e.id)).toEqual(expected);
    expect(received.map((e) => e.id)).toEqual(expected);
    expect(received.map((e) => e.type)).toEqual(['quarantine_raised', 'quarantine_raised', 'quarantine_released', 'quarantine_raised']);
    expect(received.map((e) => e.quarantine.sessionId)).toEqual(['outbox-a', 'outbox-b', 'outbox-a', 'outbox-c']);
    expect(await metric('dnswarden_alerts_pending')).toBe(0);
    expect(await metric('dnswarden_alerts_delivered_total')).toBe(4);
  });

  it('after another restart nothing is delivered again', async () => {
    child!.kill('SIGTERM');
    expect((await exited(child!, 10_000)).code).toBe(0);
    child = serve();
    await waitAnswering();
    await sleep(1000);
    expect(await metric('dnswarden_alerts_pending')).toBe(0);
    expect(received.map((e) => e.id)).toEqual(expected);
  });
});
