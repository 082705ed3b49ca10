#!/usr/bin/env node
// `npm run bench:ab -- A B [options]`: two dnswarden builds side by side, in one run, against the same local NSD,
// with Unbound beside them as the reference. For a change worth a few per cent, only rounds that interleave
// both builds on the same busy machine can tell: each round runs every server back to back in an order that
// rotates, and the result is the median of the per-round ratios B/A (see bench/README.md, "A/B of two builds").
//
// A and B: a git revision (built into a temporary worktree that shares this checkout's node_modules), or a
// directory holding a built `src/cli.js` (e.g. a copy of dist/). Options:
//   --set hit|miss|both|blocked|observe (both)   --rounds N (5)   --scoring on|off (on)   --seconds S (hit 5, miss 4)
// blocked / observe: the blocked-traffic flood of `npm run bench` (blockFloodNames) at a dnswarden per build whose
// session it quarantined during the warm-up / that runs `policy.mode: observe`.
// Every load is bounded (dnsperf -l, and -n 1 over a fresh name file for misses); every process is stopped.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  ROOT, log, stopAll, freePort, dnsperfWithCpu, round3, median, hitNames, writeMissFile, startNsd, startUnbound,
  baselineMode, startWarden, dnsperf, blockFloodNames,
} from './lib.mjs';

const USAGE = 'usage: npm run bench:ab -- A B [--set hit|miss|both|blocked|observe] [--rounds N] [--scoring on|off] [--seconds S]\n'
  + '  A, B: a git revision, or a directory with a built src/cli.js (e.g. a copy of dist/)\n';

function options() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { set: { type: 'string', default: 'both' }, rounds: { type: 'string', default: '5' }, scoring: { type: 'string', default: 'on' }, seconds: { type: 'string' } },
  });
  const rounds = Number(values.rounds);
  const seconds = values.seconds === undefined ? undefined : Number(values.seconds);
  if (positionals.length !== 2 || !['hit', 'miss', 'both', 'blocked', 'observe'].includes(values.set) || !['on', 'off'].includes(values.scoring)
    || !Number.isInteger(rounds) || rounds < 1 || rounds > 50 || (seconds !== undefined && !(seconds >= 1 && seconds <= 60))) {
    process.stderr.write(USAGE);
    process.exit(64);
  }
  return { builds: positionals, set: values.set, rounds, scoring: values.scoring === 'on', seconds };
}

/** The path of a build's CLI: a directory as it is, a git revision built into a temporary worktree. */
function buildOf(spec, tmp, label) {
  const dir = resolve(spec);
  if (existsSync(join(dir, 'src', 'cli.js'))) return { label, spec, cli: join(dir, 'src', 'cli.js') };
  const rev = execFileSync('git', ['rev-parse', '--verify', `${spec}^{commit}`], { cwd: ROOT, encoding: 'utf8' }).trim();
  const tree = join(tmp, `tree-${label}`);
  log(`building ${spec} (${rev.slice(0, 12)}) in ${tree}`);
  execFileSync('git', ['worktree', 'add', '--detach', tree, rev], { cwd: ROOT, stdio: 'ignore' });
  symlinkSync(join(ROOT, 'node_modules'), join(tree, 'node_modules'));
  execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: tree, stdio: 'inherit' });
  return { label, spec, rev, tree, cli: join(tree, 'dist', 'src', 'cli.js') };
}

async function main() {
  const o = options();
  const tmp = mkdtempSync(join(tmpdir(), 'dnswarden-ab-'));
  const builds = [];
  try {
    builds.push(buildOf(o.builds[0], tmp, 'A'), buildOf(o.builds[1], tmp, 'B'));
    const baseline = baselineMode(tmp, builds[0].cli);
    const nsdPort = await freePort();
    await startNsd(tmp, nsdPort);
    const ubPort = await freePort();
    const unbound = await startUnbound(tmp, ubPort, nsdPort);
    const servers = [{ key: 'unbound', port: ubPort, pid: unbound.child.pid }];
    for (const b of builds) {
      const w = await startWarden(tmp, `warden-${b.label}`, { nsdPort, scoring: o.scoring, baseline }, undefined, b.cli);
      servers.push({ key: b.label, port: w.port, pid: w.pid });
    }
    const sets = o.set === 'both' ? ['hit', 'miss'] : [o.set];
    const hitFile = join(tmp, 'hit.txt');
    writeFileSync(hitFile, `${hitNames().map((n) => `${n} A`).join('\n')}\n`);
    if (sets.includes('hit')) for (const s of servers) dnsperf(s.port, hitFile, { seconds: 10, maxRuns: 2 }); // warm: every hit name cached
    const floodFile = join(tmp, 'flood.txt');
    writeFileSync(floodFile, `${blockFloodNames().map((n) => `${n} A`).join('\n')}\n`);
    // The flood sets get a dnswarden per build of their own (quarantined by the warm-up, or in observe mode).
    const flooded = [servers[0]];
    if (sets.includes('blocked') || sets.includes('observe')) {
      for (const b of builds) {
        const w = await startWarden(tmp, `warden-${b.label}-${o.set}`, { nsdPort, scoring: true, baseline, mode: o.set === 'observe' ? 'observe' : undefined }, undefined, b.cli);
        flooded.push({ key: b.label, port: w.port, pid: w.pid });
      }
      for (const s of flooded) {
        const w = dnsperf(s.port, floodFile, { seconds: 10, maxRuns: 2 });
        log(`warm flood ${s.key}: ${JSON.stringify(w.rcodes)}`);
      }
    }

    const rounds = [];
    for (let r = 0; r < o.rounds; r++) {
      const order = servers.map((_, i) => servers[(i + r) % servers.length]);
      const round = { order: order.map((s) => s.key) };
      for (const set of sets) {
        round[set] = {};
        const flood = set === 'blocked' || set === 'observe';
        for (const s of flood ? flooded.map((_, i) => flooded[(i + r) % flooded.length]) : order) {
          if (flood) {
            round[set][s.key] = dnsperfWithCpu(s.pid, s.port, floodFile, { seconds: o.seconds ?? 5 });
          } else if (set === 'hit') {
            round.hit[s.key] = dnsperfWithCpu(s.pid, s.port, hitFile, { seconds: o.seconds ?? 5 });
          } else {
            const f = join(tmp, `miss-${r}-${s.key}.txt`);
            writeMissFile(f, `ab${r}${s.key.toLowerCase()}`, 150_000);
            round.miss[s.key] = dnsperfWithCpu(s.pid, s.port, f, { seconds: o.seconds ?? 4, maxRuns: 1 });
            rmSync(f);
          }
        }
        round[set].ratios = { b_vs_a: round3(round[set].B.qps / round[set].A.qps), a_vs_unbound: round3(round[set].A.qps / round[set].unbound.qps), b_vs_unbound: round3(round[set].B.qps / round[set].unbound.qps) };
        log(`round ${r + 1}/${o.rounds} ${set}: A ${round[set].A.qps} B ${round[set].B.qps} unbound ${round[set].unbound.qps} → B/A ${round[set].ratios.b_vs_a}`);
      }
      rounds.push(round);
    }

    const out = [`A = ${builds[0].spec}${builds[0].rev ? ` (${builds[0].rev.slice(0, 12)})` : ''}, B = ${builds[1].spec}${builds[1].rev ? ` (${builds[1].rev.slice(0, 12)})` : ''}; scoring ${o.scoring ? 'on' : 'off'}; ${o.rounds} rounds, medians of same-round ratios`];
    for (const set of sets) {
      const ratio = (k) => round3(median(rounds.map((r) => r[set].ratios[k])));
      const cpu = (key, k) => median(rounds.map((r) => r[set][key].server_cpu[k]));
      out.push(`${set}: B/A ${ratio('b_vs_a')} (rounds ${rounds.map((r) => r[set].ratios.b_vs_a).join(', ')}); A/Unbound ${ratio('a_vs_unbound')}, B/Unbound ${ratio('b_vs_unbound')}; `
        + `main thread µs/query A ${cpu('A', 'main_thread_us_per_query')} B ${cpu('B', 'main_thread_us_per_query')}, user µs/query A ${cpu('A', 'usr_us_per_query')} B ${cpu('B', 'usr_us_per_query')}`);
    }
    process.stdout.write(`${out.join('\n')}\n`);
  } finally {
    await stopAll();
    for (const b of builds) if (b.tree) { try { execFileSync('git', ['worktree', 'remove', '--force', b.tree], { cwd: ROOT, stdio: 'ignore' }); } catch { /* removed below */ } }
    rmSync(tmp, { recursive: true, force: true });
    // Only a run that added worktrees prunes: other checkouts' worktrees are none of its business.
    if (builds.some((b) => b.tree)) { try { execFileSync('git', ['worktree', 'prune'], { cwd: ROOT, stdio: 'ignore' }); } catch { /* not a git checkout */ } }
  }
}

main().catch(async (err) => {
  process.stderr.write(`bench:ab failed: ${err.stack ?? err}\n`);
  await stopAll();
  process.exit(1);
});
