// bench/onoff-processes.mjs — how much of a one-pair on/off ratio is the luck of the two processes? K dnswardens
// with scoring on and K with it off (the same build, the same config as `npm run bench`'s warden_on / warden_off),
// ROUNDS rounds of the cache-hit set (4 s each, the order rotating over all 2K), QPS and main-thread µs per hit
// from /proc. Prints each process's median, the on/off ratio each of the K×K on/off pairs would have reported
// alone (median of same-round ratios, as bench/run.mjs computes hit_on_vs_off), and the pooled ratio (per round:
// mean QPS of the K on processes / mean of the K off processes; median over rounds). Loopback only; owns its
// processes and temp dir. MISS=1: after each round's hit runs, every process also gets a miss flood (150,000 fresh
// names, 4 s), as bench/run.mjs's rounds do.
//   npm run build && node bench/onoff-processes.mjs          (K=3 ROUNDS=6 by default)
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { baselineMode, dnsperf, dnsperfWithCpu, freePort, hitNames, median, round1, round3, startNsd, startWarden, stopAll, writeMissFile } from './lib.mjs';

const K = Number(process.env.K ?? 3);
const ROUNDS = Number(process.env.ROUNDS ?? 6);
const SECONDS = Number(process.env.SECONDS_PER_RUN ?? 4);
const MISS = process.env.MISS === '1';
const tmp = mkdtempSync(join(tmpdir(), 'onoff-processes-'));
try {
  const baseline = baselineMode(tmp);
  const nsdPort = await freePort();
  await startNsd(tmp, nsdPort);
  const servers = [];
  for (let i = 0; i < K; i++) {
    for (const scoring of [true, false]) {
      const key = `${scoring ? 'on' : 'off'}${i + 1}`;
      servers.push({ key, scoring, ...(await startWarden(tmp, key, { nsdPort, scoring, baseline })) });
    }
  }
  const hitFile = join(tmp, 'hit.txt');
  writeFileSync(hitFile, `${hitNames().map((n) => `${n} A`).join('\n')}\n`);
  for (const s of servers) dnsperf(s.port, hitFile, { seconds: 4, maxRuns: 2 }); // warm: every hit name cached
  const got = Object.fromEntries(servers.map((s) => [s.key, []]));
  for (let r = 0; r < ROUNDS; r++) {
    const order = servers.map((_, i) => servers[(i + r) % servers.length]);
    for (const s of order) {
      const x = dnsperfWithCpu(s.pid, s.port, hitFile, { seconds: SECONDS });
      got[s.key].push({ qps: x.qps, us: x.server_cpu.main_thread_us_per_query });
    }
    if (MISS) {
      for (const s of order) {
        const file = join(tmp, `miss-${r}-${s.key}.txt`);
        writeMissFile(file, `r${r}${s.key}`, 150_000); // letters and digits, as bench/run.mjs's tags
        dnsperf(s.port, file, { seconds: 4, maxRuns: 1 });
        rmSync(file);
      }
    }
    console.log(`round ${r + 1}: ${servers.map((s) => `${s.key} ${Math.round(got[s.key][r].qps)} q/s ${got[s.key][r].us} µs`).join(', ')}`);
  }
  const on = servers.filter((s) => s.scoring).map((s) => s.key);
  const off = servers.filter((s) => !s.scoring).map((s) => s.key);
  for (const s of servers) console.log(`${s.key}: median ${Math.round(median(got[s.key].map((x) => x.qps)))} q/s, main thread ${round1(median(got[s.key].map((x) => x.us)))} µs per hit`);
  const pairs = [];
  for (const a of on) for (const b of off) pairs.push({ pair: `${a}/${b}`, ratio: round3(median(got[a].map((x, i) => x.qps / got[b][i].qps))) });
  const mean = (keys, i) => keys.reduce((sum, k) => sum + got[k][i].qps, 0) / keys.length;
  const pooled = round3(median(got[on[0]].map((_, i) => mean(on, i) / mean(off, i))));
  const same = (keys) => keys.slice(1).map((k) => round3(median(got[k].map((x, i) => x.qps / got[keys[0]][i].qps))));
  console.log(`one-pair on/off ratios: ${pairs.map((p) => `${p.pair} ${p.ratio}`).join(', ')} (range ${Math.min(...pairs.map((p) => p.ratio))}–${Math.max(...pairs.map((p) => p.ratio))})`);
  console.log(`same-mode ratios to the first process (identical code and config): on ${same(on).join(', ')}; off ${same(off).join(', ')}`);
  console.log(`pooled on/off (${K} processes each): ${pooled}`);
} finally {
  await stopAll();
  rmSync(tmp, { recursive: true, force: true });
}
