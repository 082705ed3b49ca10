#!/usr/bin/env node
// A fleet (issue 15): a real redis-server on a free loopback port and three `dnswarden serve` replicas (A, B, C)
// with `fleet.redis`, then
//   (1) propagation: N sessions registered through A (so every replica knows them), each quarantined on A by real
//       exfiltration-shaped DNS traffic from its own loopback address, while a bounded dnsperf load (fixed rate,
//       cache hits, another session) runs against B and C; for each quarantine, the time from A's blocking answer
//       (the one that raised it) to the first answer on B and on C, from the same address, that says
//       "session quarantined" (each polled every POLL_MS, one query in flight) — p50/p99 over N;
//   (2) cache-hit QPS with the fleet on vs off: dnsperf against replica A and against a replica without
//       `fleet.redis` (same config otherwise), interleaved rounds, the median of same-round ratios.
// `node bench/fleet.mjs` (after `npm run build`) runs it alone, prints the markdown and writes
// bench/results/fleet-<ISO-date>.json (BENCH_NO_WRITE=1: print only); bench/run.mjs calls `fleetRedisBench` as
// one more section. Every process it starts (redis-server, replicas, dnsperf) is tracked by PID (lib.mjs) and
// stopped. Bounded: N quarantines (BENCH_FLEET_QUARANTINES, 50), each poll ≤ 5 s, the background load ≤ 120 s,
// QPS rounds × seconds (BENCH_ROUNDS, BENCH_HIT_SECONDS).
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { SignJWT } from 'jose';
import {
  ANSWER_IP, BENCH_DIR, CLI, P, TOKEN, WARDEN_NODE_ARGS, ZONE, digA, dnsperfWithCpu, dnsperf, freePort, hitNames, httpText, log, median, round1, round3,
  sleep, start, startNsd, stop, stopAll, waitFor,
} from './lib.mjs';

const N = Number(process.env.BENCH_FLEET_QUARANTINES ?? 50);
const POLL_MS = 2;
const POLL_CAP_MS = 5000;
const BACKGROUND_QPS = Number(process.env.BENCH_FLEET_BACKGROUND_QPS ?? 2000); // per replica (B and C)
const SECRET = 'bench-fleet-registration-secret-0123456789';
const LIFTED = '{ session_volume_budget_bytes: 1e15, bandwidth_bytes_per_min: 1e15, encoded_volume_budget_bytes: 1e15, total_volume_budget_bytes: 1e15, repeat_volume_budget_bytes: 1e15 }';
// Session i (registered, scheduled: quarantined after 2 blocks) owns 127.0.1.(i+1); the load comes from 127.0.0.1.
const addressOf = (i) => `127.0.1.${i + 1}`;

function base32Label(seed) {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567';
  const bytes = createHash('sha512').update(seed).digest();
  let out = '';
  for (let i = 0; out.length < 63; i++) out += alphabet[bytes[i % bytes.length] & 31];
  return out;
}
const exfilName = (i, k) => `${base32Label(`fleet-${i}-${k}`)}.${'abcdefghijklmnop'[k % 16]}.exfil.${ZONE}`;

// ------------------------------------------------------------------------------------------------
// A minimal DNS client: one query with an OPT record (so the EDE comes back), one socket bound to the session's address.
function encodeQuery(id, name, qtype) {
  const labels = name.split('.').filter(Boolean).map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')]));
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2); // RD
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(1, 10);
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(qtype, 0);
  tail.writeUInt16BE(1, 2);
  const opt = Buffer.from([0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]); // root, OPT, 1232 B, no options
  return Buffer.concat([header, ...labels, Buffer.from([0]), tail, opt]);
}

function ask(port, bind, name, qtype = 1, timeoutMs = 500) {
  return new Promise((resolve) => {
    const s = createSocket('udp4');
    const id = Math.floor(Math.random() * 65536);
    const done = (v) => { clearTimeout(timer); try { s.close(); } catch { /* closed */ } resolve(v); };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    s.on('error', () => done(undefined));
    s.on('message', (m) => { if (m.length >= 12 && m.readUInt16BE(0) === id) done(m); });
    s.bind(0, bind, () => s.send(encodeQuery(id, name, qtype), port, '127.0.0.1'));
  });
}
/** NXDOMAIN with the EDE text of a quarantined session ("session quarantined (qr-…)"). */
const isQuarantined = (m) => m !== undefined && (m[3] & 0x0f) === 3 && m.includes('session quarantined (qr-');
const isBlocked = (m) => m !== undefined && (m[3] & 0x0f) === 3;

// ------------------------------------------------------------------------------------------------
async function startRedis(tmp) {
  const port = await freePort();
  const rec = start('redis-server', 'redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--dir', tmp], join(tmp, 'redis.out'));
  await waitFor('redis-server', () => readFileSync(rec.logFile, 'utf8').includes('Ready to accept connections'), 15_000, rec);
  return { rec, port, url: `redis://127.0.0.1:${port}/0` };
}

async function startReplica(tmp, name, { nsdPort, redisUrl }) {
  const dataDir = join(tmp, `${name}-data`);
  mkdirSync(dataDir, { recursive: true });
  const dnsPort = await freePort();
  const adminPort = await freePort();
  const conf = join(tmp, `${name}.yaml`);
  writeFileSync(conf, `listen: { dns: ["127.0.0.1:${dnsPort}"], admin: "127.0.0.1:${adminPort}" }
admin: { token: "${TOKEN}" }
storage: { dir: "${dataDir}" }
upstreams: [ { address: "127.0.0.1:${nsdPort}", timeout_ms: 1000 } ]
sessions:
  static: [ { id: load, addresses: ["127.0.0.1/32"], type: interactive, user: load, role: bench } ]
  signing_keys: [ { kid: bench, alg: HS256, secret: "${SECRET}" } ]
policy: { session_types: { interactive: ${LIFTED} } }
${redisUrl === undefined ? '' : `fleet: { name: benchfleet, redis: { url: "${redisUrl}" } }\n`}logging: { level: warn }
`);
  const rec = start(name, 'node', [...WARDEN_NODE_ARGS, CLI, 'serve', '--config', conf], join(tmp, `${name}.out`));
  await waitFor(name, async () => (await httpText(adminPort, '/healthz')).status === 200, 30_000, rec);
  await waitFor(name, () => digA(dnsPort, `www.site000.${ZONE}`) === ANSWER_IP, 20_000, rec);
  return { name, rec, pid: rec.child.pid, port: dnsPort, adminPort };
}

function post(port, path, body) {
  return fetch(`http://127.0.0.1:${port}${path}`, {
    method: 'POST', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  }).then(async (r) => ({ status: r.status, text: await r.text() }));
}

async function registerAll(a, others) {
  const key = new TextEncoder().encode(SECRET);
  for (let i = 0; i < N; i++) {
    const token = await new SignJWT({ sid: `fleet-${i}`, user: `user-${i}`, role: 'agent', session_type: 'scheduled', addresses: [`${addressOf(i)}/32`] })
      .setProtectedHeader({ alg: 'HS256', kid: 'bench' }).setExpirationTime(Math.floor(Date.now() / 1000) + 3600).sign(key);
    const r = await post(a.adminPort, '/v1/sessions', { token });
    if (r.status !== 200 && r.status !== 201) throw new Error(`register fleet-${i} on A: HTTP ${r.status} ${r.text}`);
  }
  // Every session known on B and C before the clock starts: the measurement is the quarantine's propagation only.
  for (const r of others) await waitFor(`sessions on ${r.name}`, async () => (await httpText(r.adminPort, `/v1/sessions/fleet-${N - 1}`)).status === 200 && (await httpText(r.adminPort, '/v1/sessions/fleet-0')).status === 200, 20_000, r.rec);
}

/** Quarantines session i on A; → ms from A's quarantining answer to the first quarantined answer on each other replica. */
async function propagateOne(i, a, others) {
  const bind = addressOf(i);
  let t0;
  for (let k = 0; k < 16; k++) {
    const m = await ask(a.port, bind, exfilName(i, k), 16);
    if (isQuarantined(m)) { t0 = performance.now(); break; }
    if (m !== undefined && !isBlocked(m)) throw new Error(`session ${i}: exfil query ${k} on A was answered (rcode ${m[3] & 15}), not blocked`);
  }
  if (t0 === undefined) throw new Error(`session ${i}: not quarantined on A after 16 exfiltration-shaped queries`);
  const polls = await Promise.all(others.map(async (r) => {
    let queries = 0;
    while (performance.now() - t0 < POLL_CAP_MS) {
      queries++;
      const m = await ask(r.port, bind, `www.site${String(i % 100).padStart(3, '0')}.${ZONE}`, 1, 300);
      if (isQuarantined(m)) return { ms: round3(performance.now() - t0), queries };
      await sleep(POLL_MS);
    }
    return { ms: null, queries, timed_out: true };
  }));
  return Object.fromEntries(others.map((r, j) => [r.name, polls[j]]));
}

const pct = (xs, p) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((x, y) => x - y);
  return v.length ? round3(v[Math.min(v.length - 1, Math.floor((p / 100) * v.length))]) : NaN;
};

/** dnsperf at a fixed rate, in the background (tracked by PID), for at most `seconds`. */
function backgroundLoad(tmp, r, hitFile, seconds) {
  return start(`dnsperf-bg-${r.name}`, 'dnsperf', ['-s', '127.0.0.1', '-p', String(r.port), '-d', hitFile, '-l', String(seconds), '-Q', String(BACKGROUND_QPS),
    '-c', '2', '-q', '50', '-t', '2', '-T', '1'], join(tmp, `dnsperf-bg-${r.name}.out`));
}
async function endLoad(rec) {
  if (rec.alive) { try { process.kill(rec.child.pid, 'SIGINT'); } catch { /* gone */ } } // dnsperf prints its statistics on SIGINT
  await Promise.race([rec.exited, sleep(5000)]);
  await stop(rec);
  const out = readFileSync(rec.logFile, 'utf8');
  const num = (re) => Number(re.exec(out)?.[1] ?? NaN);
  return { qps: round1(num(/Queries per second:\s+([\d.]+)/)), completed: num(/Queries completed:\s+(\d+)/), lost: num(/Queries lost:\s+(\d+)/) };
}

export async function fleetRedisBench(tmp, { nsdPort, hitFile, rounds = P.rounds, seconds = P.hitSeconds }) {
  const redis = await startRedis(tmp);
  const started = [];
  try {
    const [a, b, c] = await Promise.all(['fleet-A', 'fleet-B', 'fleet-C'].map((n) => startReplica(tmp, n, { nsdPort, redisUrl: redis.url })));
    started.push(a, b, c);
    log(`fleet: redis :${redis.port} (pid ${redis.rec.child.pid}), replicas A :${a.port} B :${b.port} C :${c.port}`);
    for (const r of [a, b, c]) dnsperf(r.port, hitFile, { seconds: 5, maxRuns: 1 }); // warm: every hit name cached
    await registerAll(a, [b, c]);

    // (1) propagation under a background load on B and C.
    const loads = [b, c].map((r) => backgroundLoad(tmp, r, hitFile, 120));
    await sleep(1000);
    const samples = [];
    const deadline = performance.now() + 100_000;
    for (let i = 0; i < N && performance.now() < deadline; i++) samples.push(await propagateOne(i, a, [b, c]));
    const background = Object.fromEntries(await Promise.all([b, c].map(async (r, j) => [r.name, await endLoad(loads[j])])));
    const per = (name) => samples.map((s) => s[name].ms);
    const propagation = {
      quarantines: samples.length, poll_interval_ms: POLL_MS, background_qps_per_replica: BACKGROUND_QPS, background,
      timed_out: samples.reduce((n, s) => n + (s['fleet-B'].timed_out ? 1 : 0) + (s['fleet-C'].timed_out ? 1 : 0), 0),
      B: { p50_ms: pct(per('fleet-B'), 50), p99_ms: pct(per('fleet-B'), 99), max_ms: pct(per('fleet-B'), 100) },
      C: { p50_ms: pct(per('fleet-C'), 50), p99_ms: pct(per('fleet-C'), 99), max_ms: pct(per('fleet-C'), 100) },
      both: { p50_ms: pct([...per('fleet-B'), ...per('fleet-C')], 50), p99_ms: pct([...per('fleet-B'), ...per('fleet-C')], 99) },
      samples,
    };
    log(`fleet propagation: B p50 ${propagation.B.p50_ms} ms p99 ${propagation.B.p99_ms}; C p50 ${propagation.C.p50_ms} p99 ${propagation.C.p99_ms}; timed out ${propagation.timed_out}; background ${JSON.stringify(background)}`);
    await stop(b.rec);
    await stop(c.rec);

    // (2) cache-hit QPS, fleet on (A) vs off (a replica without fleet.redis), interleaved rounds.
    const off = await startReplica(tmp, 'fleet-off', { nsdPort });
    started.push(off);
    dnsperf(off.port, hitFile, { seconds: 5, maxRuns: 1 });
    const servers = [{ key: 'fleet_on', ...a }, { key: 'fleet_off', ...off }];
    const qpsRounds = [];
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? servers : [...servers].reverse();
      const round = { order: order.map((s) => s.key) };
      for (const s of order) round[s.key] = dnsperfWithCpu(s.pid, s.port, hitFile, { seconds });
      round.ratio_on_vs_off = round3(round.fleet_on.qps / round.fleet_off.qps);
      qpsRounds.push(round);
      log(`fleet qps round ${r + 1}/${rounds}: on ${round.fleet_on.qps} off ${round.fleet_off.qps} ratio ${round.ratio_on_vs_off}`);
    }
    const cacheHit = {
      rounds: qpsRounds,
      median: {
        fleet_on_qps: round1(median(qpsRounds.map((x) => x.fleet_on.qps))),
        fleet_off_qps: round1(median(qpsRounds.map((x) => x.fleet_off.qps))),
        ratio_on_vs_off: round3(median(qpsRounds.map((x) => x.ratio_on_vs_off))),
      },
      anomalies: qpsRounds.flatMap((x, i) => servers.filter((s) => x[s.key].lost > 0 || Object.keys(x[s.key].rcodes).some((k) => k !== 'NOERROR')).map((s) => `round ${i + 1} ${s.key}: lost ${x[s.key].lost} ${JSON.stringify(x[s.key].rcodes)}`)),
    };
    return { replicas: 3, redis: 'redis-server (loopback, no persistence)', propagation, cache_hit: cacheHit };
  } finally {
    for (const r of started) await stop(r.rec);
    await stop(redis.rec);
  }
}

export function fleetMarkdown(f) {
  const p = f.propagation;
  const L = [
    `Propagation: ${p.quarantines} quarantines raised on replica A by exfiltration-shaped queries (one registered scheduled session each), B and C each under ${p.background_qps_per_replica} q/s of cache hits from another session (dnsperf: B ${p.background['fleet-B'].qps} q/s, C ${p.background['fleet-C'].qps} q/s achieved); time from A's quarantining answer to the first "session quarantined" answer on B and on C (polled every ${p.poll_interval_ms} ms, one query in flight, so each figure includes one round trip).`, '',
    '| replica | p50 ms | p99 ms | max ms |', '|---|---|---|---|',
    `| B | ${p.B.p50_ms} | ${p.B.p99_ms} | ${p.B.max_ms} |`, `| C | ${p.C.p50_ms} | ${p.C.p99_ms} | ${p.C.max_ms} |`, `| both | ${p.both.p50_ms} | ${p.both.p99_ms} | |`, '',
    `Not seen within 5 s: ${p.timed_out}.`, '',
    '| round | order | fleet on QPS | fleet off QPS | on/off |', '|---|---|---|---|---|',
  ];
  for (const [i, x] of f.cache_hit.rounds.entries()) L.push(`| ${i + 1} | ${x.order.join(', ')} | ${x.fleet_on.qps} | ${x.fleet_off.qps} | ${x.ratio_on_vs_off} |`);
  const m = f.cache_hit.median;
  L.push(`| **median** | | ${m.fleet_on_qps} | ${m.fleet_off_qps} | **${m.ratio_on_vs_off}** |`);
  if (f.cache_hit.anomalies.length) L.push('', `Anomalies: ${f.cache_hit.anomalies.join('; ')}`);
  return `${L.join('\n')}\n`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const tmp = mkdtempSync(join(tmpdir(), 'dnswarden-bench-fleet-'));
  try {
    const nsdPort = await freePort();
    const nsd = await startNsd(tmp, nsdPort);
    const hitFile = join(tmp, 'hit.txt');
    writeFileSync(hitFile, `${hitNames().map((n) => `${n} A`).join('\n')}\n`);
    const date = new Date().toISOString();
    const result = { date, command: 'node bench/fleet.mjs', params: { quarantines: N, rounds: P.rounds, seconds: P.hitSeconds }, ...(await fleetRedisBench(tmp, { nsdPort, hitFile })) };
    await stop(nsd);
    process.stdout.write(fleetMarkdown(result));
    if (P.write) {
      const dir = join(BENCH_DIR, 'results');
      mkdirSync(dir, { recursive: true });
      const file = join(dir, `fleet-${date.replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z')}.json`);
      writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
      process.stdout.write(`wrote ${file}\n`);
    }
  } catch (err) {
    process.stderr.write(`fleet bench failed: ${err?.stack ?? err}\n`);
    process.exitCode = 1;
  } finally {
    await stopAll();
    rmSync(tmp, { recursive: true, force: true });
  }
}
