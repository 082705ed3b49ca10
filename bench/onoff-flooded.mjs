// bench/onoff-flooded.mjs — is the scoring-on cost on cache hits a cost of scoring, or of what the miss rounds leave
// behind? Four dnswardens from dist/ on one NSD: scoring on and off, each once with the main rounds' miss floods
// (FLOODS × 150,000 fresh names, 4 s each, as bench/run.mjs sends them) and once without; then ROUNDS rounds of the
// cache-hit set (4 s each, the order rotating), QPS and main-thread µs per query from /proc. Prints per round and
// the medians. Loopback only; owns its processes and temp dir.
//   npm run build && node bench/onoff-flooded.mjs          (ROUNDS=6 FLOODS=4 by default)
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { baselineMode, dnsperf, dnsperfWithCpu, freePort, hitNames, median, round1, startNsd, startWarden, stopAll, writeMissFile } from './lib.mjs';

const ROUNDS = Number(process.env.ROUNDS ?? 6);
const FLOODS = Number(process.env.FLOODS ?? 4);
const tmp = mkdtempSync(join(tmpdir(), 'onoff-flooded-'));
try {
  const baseline = baselineMode(tmp);
  const nsdPort = await freePort();
  await startNsd(tmp, nsdPort);
  const servers = [];
  for (const [key, scoring, flooded] of [['on_flooded', true, true], ['on_fresh', true, false], ['off_flooded', false, true], ['off_fresh', false, false]]) {
    servers.push({ key, flooded, ...(await startWarden(tmp, key, { nsdPort, scoring, baseline })) });
  }
  const hitFile = join(tmp, 'hit.txt');
  writeFileSync(hitFile, `${hitNames().map((n) => `${n} A`).join('\n')}\n`);
  for (const s of servers) dnsperf(s.port, hitFile, { seconds: 4, maxRuns: 2 });
  for (let f = 0; f < FLOODS; f++) {
    for (const s of servers.filter((x) => x.flooded)) {
      const file = join(tmp, `miss-${s.key}-${f}.txt`);
      writeMissFile(file, `fl${s.key.startsWith('on') ? 'n' : 'f'}${f}`, 150_000); // letters and digits, as bench/run.mjs's tags
      const flood = dnsperf(s.port, file, { seconds: 4, maxRuns: 1 });
      console.log(`flood ${f + 1} -> ${s.key}: ${flood.completed} answered, rcodes ${JSON.stringify(flood.rcodes)}`);
      rmSync(file);
    }
  }
  for (const s of servers.filter((x) => x.flooded)) dnsperf(s.port, hitFile, { seconds: 2, maxRuns: 1 }); // the hit set cached again
  const got = Object.fromEntries(servers.map((s) => [s.key, []]));
  for (let r = 0; r < ROUNDS; r++) {
    const order = servers.map((_, i) => servers[(i + r) % servers.length]);
    for (const s of order) {
      const x = dnsperfWithCpu(s.pid, s.port, hitFile, { seconds: 4 });
      got[s.key].push({ qps: x.qps, us: x.server_cpu.main_thread_us_per_query });
    }
    console.log(`round ${r + 1}: ${servers.map((s) => `${s.key} ${Math.round(got[s.key][r].qps)} q/s ${got[s.key][r].us} µs`).join(', ')}`);
  }
  const med = (k, f) => median(got[k].map(f));
  const ratio = (a, b) => median(got[a].map((x, i) => x.qps / got[b][i].qps)).toFixed(3);
  for (const s of servers) console.log(`${s.key}: median ${Math.round(med(s.key, (x) => x.qps))} q/s, main thread ${round1(med(s.key, (x) => x.us))} µs per hit`);
  console.log(`on/off (same-round QPS ratios, median): flooded ${ratio('on_flooded', 'off_flooded')}, fresh ${ratio('on_fresh', 'off_fresh')}; flooded/fresh: on ${ratio('on_flooded', 'on_fresh')}, off ${ratio('off_flooded', 'off_fresh')}`);
} finally {
  await stopAll();
  rmSync(tmp, { recursive: true, force: true });
}
