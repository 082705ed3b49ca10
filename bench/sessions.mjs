#!/usr/bin/env node
// Session registration and lookup cost against the number of sessions held (10 / 10,000 / 100,000),
// on SessionDirectory itself (dist/src/sessions/directory.js; `npm run build` first), no store and no sockets:
//   - register: one POST's work minus HTTP and SQLite: JWT verify, claim checks, overlap query, insert;
//   - end: DELETE's work (deregister);
//   - lookup, first query from an address: source address → session with the address cache cold
//     (an owned address, and an address no session owns: the REFUSED path);
//   - lookup, cached: the per-query hot path (the same address again).
// `node bench/sessions.mjs` prints a table and writes bench/results/sessions-<ISO-date>.json;
// `--json` prints the JSON only (bench/run.mjs calls it so and puts it in its results file).
// Every loop is bounded in count and in time. Knobs: BENCH_SESSIONS_SIZES (10,10000,100000),
// BENCH_SESSIONS_OPS (2000: per measurement), BENCH_SESSIONS_SECONDS (3: time cap per measurement),
// BENCH_NO_WRITE (1: print only).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { SessionDirectory } from '../dist/src/sessions/directory.js';
import { loadSigningKeys } from '../dist/src/sessions/credentials.js';

const BENCH_DIR = new URL('.', import.meta.url).pathname;
const SIZES = (process.env.BENCH_SESSIONS_SIZES ?? '10,10000,100000').split(',').map(Number);
const OPS = Number(process.env.BENCH_SESSIONS_OPS ?? 2000);
const SECONDS = Number(process.env.BENCH_SESSIONS_SECONDS ?? 3);
const SECRET = 'bench-registration-secret-0123456789abcdef';
const T0 = 1_900_000_000_000;
const json = process.argv.includes('--json');

// Session i owns one address: three in four IPv4 (10.0.0.0/8), one in four IPv6 (fd00::/64).
const ownedAddress = (i) => (i % 4 === 3 ? `fd00::${(i >>> 16).toString(16)}:${(i & 0xffff).toString(16)}` : `10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`);
// Addresses no session owns, in the same neighbourhoods (so a walk goes deep), and never repeated.
const unownedAddress = (j) => (j % 4 === 3 ? `fd00:0:0:1::${(j >>> 16).toString(16)}:${(j & 0xffff).toString(16)}` : `11.${(j >>> 16) & 255}.${(j >>> 8) & 255}.${j & 255}`);

function meta(i) {
  const address = ownedAddress(i);
  return { id: `s${i}`, user: 'u', role: 'r', type: 'batch', addresses: [address.includes(':') ? `${address}/128` : `${address}/32`], origin: 'registered', expiresAtMs: T0 + 86_400_000, registeredAtMs: T0 };
}

/** Runs op(i) for up to `count` i or `seconds`; → µs per op (mean) and p50/p99 of individually timed ops. */
async function measure(count, op, { individually = false } = {}) {
  const deadline = performance.now() + SECONDS * 1000;
  const times = [];
  let n = 0;
  const start = performance.now();
  for (; n < count && performance.now() < deadline; n++) {
    const t = individually ? performance.now() : 0;
    await op(n);
    if (individually) times.push(performance.now() - t);
  }
  const totalMs = performance.now() - start;
  const out = { ops: n, us_per_op: round3((totalMs * 1000) / Math.max(n, 1)) };
  if (individually && times.length > 0) {
    times.sort((a, b) => a - b);
    out.p50_us = round3(times[Math.floor(times.length * 0.5)] * 1000);
    out.p99_us = round3(times[Math.min(times.length - 1, Math.floor(times.length * 0.99))] * 1000);
  }
  return out;
}

function measureSync(count, op, { clockEvery = 1 } = {}) {
  const deadline = performance.now() + SECONDS * 1000;
  let n = 0;
  const start = performance.now();
  // A cached lookup checks the clock every 256 ops: a clock read would be most of its cost.
  while (n < count && (n % clockEvery !== 0 || performance.now() < deadline)) op(n++);
  return { ops: n, us_per_op: round3(((performance.now() - start) * 1000) / Math.max(n, 1)) };
}

const round3 = (x) => Math.round(x * 1000) / 1000;

async function atSize(size, keys) {
  const d = new SessionDirectory({ newState: () => ({}), historyMax: 0, keys, maxTtlSec: 86_400 });
  const t = performance.now();
  d.restore(Array.from({ length: size }, (_, i) => meta(i)), T0);
  const loadMs = performance.now() - t;
  const nowS = T0 / 1000;

  // Registrations of addresses next to the held ones (fresh sids, fresh addresses), tokens signed beforehand.
  const tokens = [];
  for (let j = 0; j < OPS; j++) {
    const address = ownedAddress(size + j);
    tokens.push(await new SignJWT({ sid: `new${j}`, user: 'u', role: 'r', session_type: 'batch', addresses: [address.includes(':') ? `${address}/128` : `${address}/32`] })
      .setProtectedHeader({ alg: 'HS256', kid: 'bench' }).setExpirationTime(nowS + 3600).sign(new TextEncoder().encode(SECRET)));
  }
  const register = await measure(OPS, (j) => d.register(tokens[j], T0), { individually: true });
  const end = await measure(register.ops, (j) => { if (!d.deregister(`new${j}`)) throw new Error(`new${j} was not registered`); }, { individually: true });

  // Warm-up (JIT) on addresses the measurement does not use; then empty the address cache: every change
  // empties it, and restore([]) (no sessions) is a change that changes nothing.
  for (let j = 0; j < 2000; j++) d.admit(unownedAddress(OPS + j), T0);
  d.restore([], T0);
  const held = Math.min(size, OPS);
  let refused = 0;
  const owned = measureSync(held, (j) => { if ('refused' in d.admit(ownedAddress(Math.floor((j * size) / held)), T0)) refused++; });
  const unowned = measureSync(OPS, (j) => { if (!('refused' in d.admit(unownedAddress(j), T0))) refused--; });
  if (refused !== 0) throw new Error('a lookup gave the wrong answer');
  const hotAddress = ownedAddress(size - 1);
  d.admit(hotAddress, T0);
  const cached = measureSync(2_000_000, () => d.admit(hotAddress, T0), { clockEvery: 256 });
  return {
    sessions: size, load_ms: round3(loadMs), register, end,
    lookup_first_owned: owned, lookup_first_unowned: unowned, lookup_cached: cached,
    heap_used_mb: round3(process.memoryUsage().heapUsed / 1048576),
  };
}

export async function sessionsBench() {
  const keys = await loadSigningKeys([{ kid: 'bench', alg: 'HS256', secret: SECRET }]);
  const rows = [];
  for (const size of SIZES) {
    rows.push(await atSize(size, keys));
    process.stderr.write(`sessions bench: ${size} sessions done\n`);
    globalThis.gc?.();
  }
  return { command: 'node bench/sessions.mjs', ops_per_measurement: OPS, seconds_cap_per_measurement: SECONDS, rows };
}

export function sessionsMarkdown(s) {
  const L = ['| sessions | register µs (mean / p50 / p99) | end µs (mean) | first lookup µs, owned / unowned | cached lookup µs | ops measured (register, owned, unowned) |', '|---|---|---|---|---|---|'];
  for (const r of s.rows) {
    L.push(`| ${r.sessions.toLocaleString('en-US')} | ${r.register.us_per_op} / ${r.register.p50_us} / ${r.register.p99_us} | ${r.end.us_per_op} | ${r.lookup_first_owned.us_per_op} / ${r.lookup_first_unowned.us_per_op} | ${r.lookup_cached.us_per_op} | ${r.register.ops}, ${r.lookup_first_owned.ops}, ${r.lookup_first_unowned.ops} |`);
  }
  return `${L.join('\n')}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const result = { date: new Date().toISOString(), node: process.version, ...(await sessionsBench()) };
  if (json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
  } else {
    process.stdout.write(sessionsMarkdown(result));
    if (process.env.BENCH_NO_WRITE !== '1') {
      const dir = join(BENCH_DIR, 'results');
      mkdirSync(dir, { recursive: true });
      const file = join(dir, `sessions-${result.date.replace(/[:]/g, '-').replace(/\.\d+Z$/, 'Z')}.json`);
      writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
      process.stdout.write(`wrote ${file}\n`);
    }
  }
}
