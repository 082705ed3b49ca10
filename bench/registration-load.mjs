#!/usr/bin/env node
// What registrations cost every client: a real `dnswarden serve` holding BENCH_REG_SESSIONS registered
// sessions (8,500: the security issue's figure; written to its store before it starts, so it restores
// them), one client (127.0.0.1, a static session) probed by dnsperf at a fixed rate with per-query
// latencies, first alone, then while the runtime registers BENCH_REG_RATE new sessions a second over
// the admin API (10). Prints p50/p99 per phase and the registrations' own HTTP latency. Not part of
// `npm run bench` (it takes the CPU for ~40 s); needs nsd and dnsperf. Bounded: each phase runs
// BENCH_REG_SECONDS (10) with dnsperf -l, registrations stop with the phase. BENCH_CLI runs another
// build (e.g. an older commit's dist/src/cli.js) for a before/after comparison.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { Store } from '../dist/src/store.js';
import {
  CLI, TOKEN, ZONE, ANSWER_IP, WARDEN_NODE_ARGS, log, start, stopAll, freePort, waitFor, digA, httpText, hitNames, startNsd, sleep, round3,
} from './lib.mjs';

const SESSIONS = Number(process.env.BENCH_REG_SESSIONS ?? 8500);
const RATE = Number(process.env.BENCH_REG_RATE ?? 10);
const SECONDS = Number(process.env.BENCH_REG_SECONDS ?? 10);
const QPS = Number(process.env.BENCH_REG_QPS ?? 1000);
const cli = process.env.BENCH_CLI ?? CLI;
const SECRET = 'bench-registration-secret-0123456789abcdef';

const address = (i) => `10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`;

function probe(port, file) {
  return new Promise((resolve, reject) => {
    const args = ['-s', '127.0.0.1', '-p', String(port), '-d', file, '-l', String(SECONDS), '-Q', String(QPS), '-c', '2', '-q', '100', '-T', '1', '-t', '2', '-v'];
    const child = spawn('dnsperf', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => { out += c; });
    child.on('error', reject);
    child.on('close', () => {
      const lat = [];
      for (const line of out.split('\n')) if (line.startsWith('> ')) lat.push(Number(line.slice(line.lastIndexOf(' ') + 1)) * 1000);
      lat.sort((a, b) => a - b);
      const pct = (p) => round3(lat[Math.min(lat.length - 1, Math.floor((p / 100) * lat.length))]);
      resolve({ samples: lat.length, p50_ms: pct(50), p99_ms: pct(99), max_ms: round3(lat[lat.length - 1]), lost: Number(/Queries lost:\s+(\d+)/.exec(out)?.[1] ?? NaN) });
    });
  });
}

async function main() {
  const tmp = mkdtempSync(join(tmpdir(), 'dnswarden-regload-'));
  try {
    const nsdPort = await freePort();
    await startNsd(tmp, nsdPort);
    const dataDir = join(tmp, 'data');
    const store = Store.open(dataDir);
    const t0 = Date.now();
    store.db.transaction(() => {
      for (let i = 0; i < SESSIONS; i++) {
        store.saveSession({ id: `held${i}`, user: 'u', role: 'r', type: 'batch', addresses: [`${address(i)}/32`], origin: 'registered', expiresAtMs: t0 + 3_600_000, registeredAtMs: t0 });
      }
    })();
    store.close();

    const dnsPort = await freePort();
    const adminPort = await freePort();
    const conf = join(tmp, 'warden.yaml');
    writeFileSync(conf, `listen: { dns: ["127.0.0.1:${dnsPort}"], admin: "127.0.0.1:${adminPort}" }
admin: { token: "${TOKEN}" }
storage: { dir: "${dataDir}" }
upstreams: [ { address: "127.0.0.1:${nsdPort}", timeout_ms: 1000 } ]
sessions:
  static: [ { id: bench, addresses: ["127.0.0.1/32"], type: interactive, user: bench, role: bench } ]
  signing_keys: [ { kid: bench, alg: HS256, secret: "${SECRET}" } ]
logging: { level: warn }
`);
    const rec = start('warden', 'node', [...WARDEN_NODE_ARGS, cli, 'serve', '--config', conf], join(tmp, 'warden.out'));
    await waitFor('warden', async () => (await httpText(adminPort, '/healthz')).status === 200, 60_000, rec);
    await waitFor('warden', () => digA(dnsPort, `www.site000.${ZONE}`) === ANSWER_IP, 20_000, rec);
    const hitFile = join(tmp, 'hit.txt');
    writeFileSync(hitFile, `${hitNames().map((n) => `${n} A`).join('\n')}\n`);
    await probe(dnsPort, hitFile); // warm: every name cached

    const result = { sessions_held: SESSIONS, registrations_per_s: RATE, probe_qps: QPS, seconds: SECONDS, cli };
    result.alone = await probe(dnsPort, hitFile);
    log(`alone: ${JSON.stringify(result.alone)}`);

    const count = RATE * SECONDS;
    const tokens = [];
    for (let j = 0; j < count; j++) {
      tokens.push(await new SignJWT({ sid: `new${j}`, user: 'u', role: 'r', session_type: 'batch', addresses: [`${address(SESSIONS + j)}/32`] })
        .setProtectedHeader({ alg: 'HS256', kid: 'bench' }).setExpirationTime('1h').sign(new TextEncoder().encode(SECRET)));
    }
    const regMs = [];
    let failed = 0;
    const registering = (async () => {
      const startAt = performance.now();
      for (let j = 0; j < count; j++) {
        const due = startAt + (j * 1000) / RATE;
        const wait = due - performance.now();
        if (wait > 0) await sleep(wait);
        const t = performance.now();
        const res = await fetch(`http://127.0.0.1:${adminPort}/v1/sessions`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify({ token: tokens[j] }) });
        await res.text();
        regMs.push(performance.now() - t);
        if (res.status !== 201) failed++;
      }
    })();
    const [during] = await Promise.all([probe(dnsPort, hitFile), registering]);
    regMs.sort((a, b) => a - b);
    result.during_registrations = during;
    result.registration_http_ms = { count: regMs.length, failed, p50: round3(regMs[Math.floor(regMs.length / 2)]), p99: round3(regMs[Math.min(regMs.length - 1, Math.floor(regMs.length * 0.99))]) };
    log(`during ${RATE}/s registrations: ${JSON.stringify(during)}; registrations ${JSON.stringify(result.registration_http_ms)}`);
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await stopAll();
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
