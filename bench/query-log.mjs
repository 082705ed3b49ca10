#!/usr/bin/env node
// The query log's cost (issue 17; `query_log.enabled`, on by default) on cache hits: two fresh dnswardens, the
// same config (scoring on, as warden_on) but for `query_log: { enabled: false }` on one, both warmed with the
// cache-hit set, then rounds in which each answers the hit set for the same seconds, the order alternating;
// the figure is the median of the same-round ratios on/off, with each one's main-thread µs per query.
// `npm run bench` runs it (queryLogRounds) as one more section; `node bench/query-log.mjs` (after
// `npm run build`) runs it alone and prints the JSON and the table (nothing written). Every load is bounded
// (dnsperf -l); every process started is tracked by PID (lib.mjs) and stopped.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { baselineMode, dnsperf, dnsperfWithCpu, freePort, hitNames, log, median, round1, round3, startNsd, startWarden, stop, stopAll } from './lib.mjs';

export async function queryLogRounds(tmp, { nsdPort, baseline, hitFile, rounds = 5, seconds = 5 }) {
  const on = await startWarden(tmp, 'warden-qlog-on', { nsdPort, scoring: true, baseline });
  const off = await startWarden(tmp, 'warden-qlog-off', { nsdPort, scoring: true, baseline, extraYaml: 'query_log: { enabled: false }' });
  try {
    const servers = { query_log_on: on, query_log_off: off };
    for (const w of Object.values(servers)) dnsperf(w.port, hitFile, { seconds: 10, maxRuns: 2 }); // warm: every hit name cached
    const out = { set: 'hit', rounds: [] };
    for (let r = 0; r < rounds; r++) {
      // Alternate which goes first, so a drift in machine load does not favour one.
      const order = r % 2 === 0 ? ['query_log_on', 'query_log_off'] : ['query_log_off', 'query_log_on'];
      const round = { order };
      for (const k of order) round[k] = dnsperfWithCpu(servers[k].pid, servers[k].port, hitFile, { seconds });
      round.ratio_on_to_off = round3(round.query_log_on.qps / round.query_log_off.qps);
      out.rounds.push(round);
      log(`query log round ${r + 1}/${rounds}: on ${round.query_log_on.qps} q/s, off ${round.query_log_off.qps} q/s, on/off ${round.ratio_on_to_off}`);
    }
    const med = (k, f) => median(out.rounds.map((x) => f(x[k])));
    out.median = {
      on_qps: round1(med('query_log_on', (x) => x.qps)),
      off_qps: round1(med('query_log_off', (x) => x.qps)),
      ratio_on_to_off: round3(median(out.rounds.map((x) => x.ratio_on_to_off))),
      on_main_thread_us_per_query: round1(med('query_log_on', (x) => x.server_cpu?.main_thread_us_per_query)),
      off_main_thread_us_per_query: round1(med('query_log_off', (x) => x.server_cpu?.main_thread_us_per_query)),
      all_noerror: out.rounds.every((x) => ['query_log_on', 'query_log_off'].every((k) => x[k].lost === 0 && Object.keys(x[k].rcodes).every((c) => c === 'NOERROR'))),
    };
    return out;
  } finally {
    await stop(on.rec);
    await stop(off.rec);
  }
}

export function queryLogMarkdown(q) {
  const L = ['| round | order | query log on QPS | off QPS | on/off | main thread µs/query on / off |', '|---|---|---|---|---|---|'];
  q.rounds.forEach((x, i) => L.push(`| ${i + 1} | ${x.order.map((k) => k.replace('query_log_', '')).join(', ')} | ${x.query_log_on.qps} | ${x.query_log_off.qps} | ${x.ratio_on_to_off} | ${x.query_log_on.server_cpu?.main_thread_us_per_query} / ${x.query_log_off.server_cpu?.main_thread_us_per_query} |`));
  const m = q.median;
  L.push(`| **median** | | ${m.on_qps} | ${m.off_qps} | **${m.ratio_on_to_off}** | ${m.on_main_thread_us_per_query} / ${m.off_main_thread_us_per_query} |`);
  L.push('', `Every answer NOERROR, none lost: ${m.all_noerror}.`);
  return `${L.join('\n')}\n`;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const tmp = mkdtempSync(join(tmpdir(), 'dnswarden-bench-qlog-'));
  try {
    const nsdPort = await freePort();
    await startNsd(tmp, nsdPort);
    const hitFile = join(tmp, 'hit.txt');
    writeFileSync(hitFile, `${hitNames().map((n) => `${n} A`).join('\n')}\n`);
    const result = await queryLogRounds(tmp, { nsdPort, baseline: baselineMode(tmp), hitFile, rounds: Number(process.env.BENCH_ROUNDS ?? 5), seconds: Number(process.env.BENCH_HIT_SECONDS ?? 5) });
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n${queryLogMarkdown(result)}`);
  } finally {
    await stopAll();
    rmSync(tmp, { recursive: true, force: true });
  }
}
