#!/usr/bin/env node
// RSS after many unique names: a fresh dnswarden (scoring on, one session for 127.0.0.0/8), BENCH_FLOOD_NAMES
// (500,000) never-seen names `<host>.f<n>.wardenbench` (10 per registrable domain) sent once, in 5 chunks, RSS
// read after each chunk (does it level off?), again 3 s later, and the peak (VmHWM). `npm run bench` runs it
// (floodRss) for its RSS section; alone it is the quick before/after of a memory change, or the way to attribute
// memory to a feature by switching it off:
//   node bench/rss.mjs [--cli <build>/src/cli.js] [--yaml 'query_log: { enabled: false }'] [--workers 2] [--cache N]
// prints one JSON object (nothing written). Every load is bounded (dnsperf -n 1 -l 60 per chunk); every process
// started is stopped on every exit path.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import {
  CLI, P, ZONE, HOSTS, log, stop, stopAll, freePort, dnsperf, dnsperfFrom, rssKb, rssTreeKb, FLEET_SOURCES, round3, startNsd,
  baselineMode, startWarden, metrics, sleep, WARDEN_NODE_ARGS,
} from './lib.mjs';

/** One flood at a fresh dnswarden; `extraYaml` is appended to its config (a feature switched off, say). */
export async function floodRss(tmp, { nsdPort, baseline, cacheEntries, workers, extraYaml, cli = CLI, label = 'flood' }) {
  const w = await startWarden(tmp, `${label}-${Math.random().toString(36).slice(2, 8)}`, { nsdPort, scoring: true, baseline, cacheEntries, workers, extraYaml }, WARDEN_NODE_ARGS, cli);
  try {
    const rssOf = workers === undefined ? rssKb : rssTreeKb;
    const before = rssOf(w.pid);
    const chunks = 5;
    const per = Math.ceil(P.floodNames / chunks);
    const curve = [];
    const total = { sent: 0, completed: 0, lost: 0, run_s: 0, rcodes: {} };
    for (let c = 0; c < chunks; c++) {
      const sources = workers === undefined ? [undefined] : FLEET_SOURCES;
      const files = sources.map((_, j) => join(tmp, `flood-${j}.txt`));
      const lines = files.map(() => []);
      // Ten names per registrable domain; with two sources each domain's names go to one of them.
      for (let i = c * per; i < Math.min(P.floodNames, (c + 1) * per); i++) lines[Math.floor(i / 10) % files.length].push(`${HOSTS[i % 10]}.f${Math.floor(i / 10).toString(36)}.${ZONE} A`);
      files.forEach((f, j) => writeFileSync(f, `${lines[j].join('\n')}\n`));
      const perf = workers === undefined
        ? dnsperf(w.port, files[0], { seconds: P.floodChunkSeconds, maxRuns: 1 })
        : await dnsperfFrom(FLEET_SOURCES, w.port, files, { seconds: P.floodChunkSeconds, maxRuns: 1 });
      files.forEach((f) => rmSync(f));
      total.sent += perf.sent; total.completed += perf.completed; total.lost += perf.lost; total.run_s = round3(total.run_s + perf.run_s);
      for (const [k, v] of Object.entries(perf.rcodes)) total.rcodes[k] = (total.rcodes[k] ?? 0) + v;
      curve.push({ names_sent: total.sent, qps: perf.qps, ...rssOf(w.pid) });
    }
    await sleep(3000);
    const settled = rssOf(w.pid);
    const m = await metrics(w.adminPort);
    const after = curve[curve.length - 1];
    const out = { names: P.floodNames, cache_max_entries: cacheEntries, workers: workers ?? 1, extra_yaml: extraYaml, rss_before: before, rss_after: { rss_mb: after.rss_mb, hwm_mb: after.hwm_mb }, rss_after_3s: settled, curve, dnsperf: total, metrics_after: m };
    log(`${label}: ${total.completed}/${total.sent} in ${total.run_s}s, rss ${before.rss_mb} → ${curve.map((x) => x.rss_mb).join(' → ')} MB (hwm ${after.hwm_mb}), 3 s later ${settled.rss_mb} MB, rcodes ${JSON.stringify(total.rcodes)}`);
    return out;
  } finally {
    await stop(w.rec);
  }
}

async function main() {
  const { values } = parseArgs({ options: { cli: { type: 'string' }, yaml: { type: 'string' }, workers: { type: 'string' }, cache: { type: 'string' } } });
  const tmp = mkdtempSync(join(tmpdir(), 'dnswarden-rss-'));
  try {
    const cli = values.cli === undefined ? CLI : resolve(values.cli);
    const baseline = baselineMode(tmp, cli);
    const nsdPort = await freePort();
    await startNsd(tmp, nsdPort);
    const r = await floodRss(tmp, {
      nsdPort, baseline, cli, extraYaml: values.yaml,
      workers: values.workers === undefined ? undefined : Number(values.workers),
      cacheEntries: values.cache === undefined ? undefined : Number(values.cache),
    });
    process.stdout.write(`${JSON.stringify({ cli, ...r }, null, 2)}\n`);
  } finally {
    await stopAll();
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => { process.stderr.write(`${err?.stack ?? err}\n`); process.exitCode = 1; });
}
