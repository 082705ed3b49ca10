#!/usr/bin/env -S node --max-semi-space-size=4 --heap-growing-percent=15
// `dnswarden serve | check-config | replay | quarantine … | sessions … | deny …`: the only place that
// exits the process. Errors are one clear line (a JSON object under --json) and a distinct status
// (src/analyst/exit-codes.ts: 2 config, 64 usage, 66 not found, 69 unreachable, 77 auth, 1 anything else).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { loadConfigFile, parseConfig, type Config } from './ops/config.js';
import { SESSION_TYPES } from './policy/schema.js';
import { WardenError, messageOf } from './errors.js';
import { analystCommand, analystHelp, ANALYST_USAGE } from './analyst/cli.js';
import { EXIT, exitOf, usageError } from './analyst/exit-codes.js';
import { createLogger } from './ops/telemetry.js';
import { WorkerLink, workerSpecFromEnv, type WorkerSpec } from './fleet/worker-link.js';

const USAGE = `usage: dnswarden <command> [options]

  serve [--config FILE]            run the resolver (embedded defaults without --config)
  check-config FILE                validate a config file; exit 0 if valid, 2 naming the field if not
  replay FILE|- [--config FILE]    re-score a JSONL query log or dnswarden's log (- = stdin) under a policy
  backup FILE [--config FILE]      copy the store (storage.dir) to FILE, also while the server runs
${ANALYST_USAGE}
  dnswarden --version; dnswarden COMMAND --help
  exit status: 0 ok, 1 failure, 2 invalid config, 64 usage, 66 not found, 69 server unreachable, 77 auth
`;

const HELP: Readonly<Record<string, string>> = {
  backup: `usage: dnswarden backup FILE [--config FILE] [--json]

  Copies the store in storage.dir of --config (the embedded default without it) to FILE, a single SQLite
  file, with SQLite's online backup over a read-only connection: safe while the server runs. FILE must
  not exist. Run it as the user that runs the server.
`,
  serve: `usage: dnswarden serve [--config FILE]

  Runs the resolver with FILE (YAML), or the embedded defaults without --config. SIGHUP re-reads the
  file; SIGTERM/SIGINT stop it.
`,
  'check-config': `usage: dnswarden check-config FILE

  Validates FILE: prints "FILE: valid" and exits 0, or prints one line naming the field and exits 2.
`,
  replay: `usage: dnswarden replay FILE|- [--config FILE] [--session-type TYPE] [--json]

  Re-scores a JSONL query log, dnswarden's own log or its query log export (- reads stdin) under the
  policy of --config (the embedded defaults without it), through the server's own query path. Lines
  that are neither queries nor verdicts are skipped and counted. --session-type: the type of a session
  whose lines do not say (interactive, batch or scheduled; default interactive).
`,
};

/** The package's version, from the package.json next to dist/ (or src/ when run from the sources). */
function version(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['..', '../..']) {
    try {
      const pkg = JSON.parse(readFileSync(join(here, up, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'dnswarden' && pkg.version !== undefined) return pkg.version;
    } catch {
      // not here: one level up
    }
  }
  return 'unknown';
}

// A resolver under a flood of unique names evicts an old cache entry per new one: garbage that V8
// lets pile up in the old generation (RSS 195–270 MB after 500,000 names with the default cache).
// `--max-semi-space-size=4 --heap-growing-percent=15` (the shebang above, `npm start`, the container's
// ENTRYPOINT) collect it sooner: ~160 MB, at no measurable cost to cache-hit throughput (`npm run
// bench`). The semi-space size only counts at start; the growing factor also works when set now, so a
// plain `node dist/src/cli.js serve` gets that half.
// Allocation-site pretenuring is turned off: with scoring on, V8 came to allocate some of the query path's
// short-lived objects in the old generation, where what they point to survives every scavenge — 73 KB
// promoted per scavenge on cache hits instead of 7 KB, a mark-compact every ~0.5 s instead of one in 5 s —
// and cache-hit QPS paid ~10 % for it (scoring on, after the bench's miss floods; 4 % with scoring off:
// bench/README.md). It works when set now, for every serving process and worker.
function tuneHeapForServing(): void {
  const given = `${process.env.NODE_OPTIONS ?? ''} ${process.execArgv.join(' ')}`;
  if (!/heap-growing-percent/.test(given)) setFlagsFromString('--heap-growing-percent=15');
  if (!/allocation-site-pretenuring/.test(given)) setFlagsFromString('--no-allocation-site-pretenuring');
}

async function serve(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, strict: true });
  tuneHeapForServing();
  const path = values.config;
  const load = (): Config => (path === undefined ? parseConfig({}) : loadConfigFile(path));
  const spec = workerSpecFromEnv();
  if (spec !== undefined) return serveAsWorker(spec);
  const config = load();
  if (config.server.workers > 1) {
    // The supervisor never starts the server itself, so it checks the zone files here: a bad one fails
    // the start (exit 2) and a bad reload reaches no worker.
    const { loadZoneFiles } = await import('./zones/zone-set.js');
    const checked = (): Config => {
      const c = load();
      loadZoneFiles(c);
      return c;
    };
    loadZoneFiles(config);
    return superviseWorkers(config, args, checked);
  }
  // Loaded here, not at the top: a supervisor (server.workers > 1) never loads the server itself.
  const { startApp } = await import('./app.js');
  const app = await startApp(config);
  // app.reload counts and logs its own failures (JSON); a file that does not load is counted the same way.
  untilSignalled(load, () => app.close(), (next) => app.reload(next).catch(() => undefined), app.reloadRejected);
  return new Promise<number>(() => undefined); // runs until a signal
}

/** One of server.workers > 1: runs the config the supervisor hands over, now and on every reload. */
async function serveAsWorker(spec: WorkerSpec): Promise<number> {
  const worker = new WorkerLink(spec);
  const { startApp } = await import('./app.js');
  const app = await startApp(await worker.firstConfig, { worker });
  const failed = (err: unknown): void => void process.stderr.write(`dnswarden: worker ${spec.index}: reload failed, keeping the running config: ${messageOf(err)}\n`);
  worker.onReload((next) => app.reload(next).catch(failed));
  worker.onReloadRejected(() => app.reloadRejected(undefined, true)); // the supervisor logged why
  // SIGHUP goes to the supervisor, which checks the file once and hands it to every worker.
  const stop = untilSignalled(() => { throw new WardenError('ERR_BAD_REQUEST', 'send SIGHUP to the supervisor, not to a worker'); }, () => app.close(), async () => undefined);
  // A worker whose supervisor is gone would answer on sockets nobody restarts: it stops too.
  process.on('disconnect', () => stop('supervisor gone'));
  return new Promise<number>(() => undefined); // runs until a signal
}

/** `serve` with server.workers > 1: the supervisor (src/fleet/supervisor.ts) runs until a signal. */
async function superviseWorkers(config: Config, args: string[], load: () => Config): Promise<number> {
  const { supervise } = await import('./fleet/supervisor.js');
  // Key and token files are checked here too, so a bad one stops the start (or the reload) before any worker sees it.
  const { loadConfigReferences } = await import('./sessions/credentials.js');
  await loadConfigReferences(config, config.admin.token);
  const log = createLogger(config.logging.level).child({ role: 'supervisor' });
  const supervisor = supervise(config, args, log, (line) => process.stderr.write(`${line}\n`));
  await supervisor.started;
  // The file is checked here, once: a bad one is reported and no worker sees it.
  // A refused file is logged here, once, as JSON, and counted by every worker (as each counts its reloads).
  const rejected = (err: unknown): void => {
    log.error({ err: messageOf(err) }, 'reload failed, keeping the running config');
    supervisor.reloadRejected();
  };
  untilSignalled(load, () => supervisor.stop(), async (next) => {
    await loadConfigReferences(next, next.admin.token);
    supervisor.reload(next);
  }, rejected);
  return new Promise<number>(() => undefined);
}

/**
 * SIGINT/SIGTERM: `close`, then exit. SIGHUP: re-read the file and hand it to `reload`; a bad file is
 * reported and the running config stays. Returns the stop function (for other reasons to stop).
 */
function untilSignalled(load: () => Config, close: () => Promise<void>, reload: (next: Config) => Promise<void>, rejected = reloadFailed): (why: string) => void {
  let stopping = false;
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`dnswarden: ${why}, shutting down\n`);
    close().then(() => process.exit(0), () => process.exit(1));
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGHUP', () => {
    let next: Config;
    try {
      next = load();
    } catch (err) {
      rejected(err);
      return;
    }
    reload(next).catch(rejected);
  });
  return stop;
}

function reloadFailed(err: unknown): void {
  process.stderr.write(`dnswarden: reload failed, keeping the running config: ${messageOf(err)}\n`);
}

async function checkConfig(args: string[]): Promise<number> {
  const file = args[0];
  if (file === undefined || args.length > 1) {
    process.stderr.write('usage: dnswarden check-config FILE\n');
    return 64;
  }
  // Exactly what serve reads before it starts: the file, then every key and token file it names.
  const config = loadConfigFile(file);
  const { loadConfigReferences } = await import('./sessions/credentials.js');
  await loadConfigReferences(config, config.admin.token);
  // The zone and policy zone files it names are part of it: parsed and checked the way serve loads them.
  const { loadZoneFiles } = await import('./zones/zone-set.js');
  loadZoneFiles(config);
  // So is the fleet's Redis password file.
  if (config.fleet.redis !== undefined) (await import('./fleet/redis-fleet.js')).redisTarget(config.fleet.redis);
  process.stdout.write(`${file}: valid\n`);
  return 0;
}

async function replay(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' }, 'session-type': { type: 'string' } }, allowPositionals: true, strict: true });
  const file = positionals[0];
  if (file === undefined || positionals.length > 1) throw usageError('usage: dnswarden replay FILE|- [--config FILE] [--session-type TYPE] [--json]');
  const type = values['session-type'];
  const sessionType = type === undefined ? undefined : SESSION_TYPES.find((t) => t === type);
  if (type !== undefined && sessionType === undefined) throw usageError(`--session-type: "${type}" is not one of ${SESSION_TYPES.join(', ')}`);
  const config = values.config === undefined ? parseConfig({}) : loadConfigFile(values.config);
  const { formatReport, replayFile } = await import('./replay/replay.js');
  // A progress line for a person watching a large file; never in a pipe or a log.
  const tty = process.stderr.isTTY === true;
  const report = await replayFile(file, config, {
    ...(sessionType === undefined ? {} : { sessionType }),
    ...(tty ? {
      onProgress: (p) => {
        const mib = (n: number): string => (n / 1048576).toFixed(0);
        const read = p.totalBytes === undefined ? `${mib(p.bytes)} MiB` : `${mib(p.bytes)} of ${mib(p.totalBytes)} MiB`;
        process.stderr.write(`\rreplay: ${p.lines} lines read (${read}), ${p.queries} queries, ${p.skipped} skipped…`);
      },
    } : {}),
  });
  if (tty) process.stderr.write('\r\x1b[K');
  process.stdout.write(values.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  return 0;
}

/**
 * `dnswarden backup FILE`: opens the store file read-only and copies it with SQLite's online backup, so it
 * works while the server runs (no admin API round trip, no token: whoever can read the store can copy it).
 */
async function backup(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, json: { type: 'boolean' } }, allowPositionals: true, strict: true });
  const dest = positionals[0];
  if (dest === undefined || positionals.length > 1) throw usageError('usage: dnswarden backup FILE [--config FILE]');
  if (existsSync(dest)) throw usageError(`${dest} exists: a backup never overwrites a file; choose a new name`);
  const config = values.config === undefined ? parseConfig({}) : loadConfigFile(values.config);
  const { backupStore } = await import('./store.js');
  const r = await backupStore(config.storage.dir, dest);
  process.stdout.write(values.json === true ? `${JSON.stringify({ file: dest, ...r })}\n` : `${dest}: the store (schema version ${r.version}, ${r.quarantines} quarantines, ${r.bytes} bytes)\n`);
  return EXIT.ok;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== undefined && !command.startsWith('-') && (rest.includes('--help') || rest.includes('-h'))) {
    const text = HELP[command] ?? (['quarantine', 'sessions', 'deny', 'audit'].includes(command) ? analystHelp(command, rest[0]?.startsWith('-') === false ? rest[0] : undefined) : undefined);
    if (text !== undefined) {
      process.stdout.write(text);
      return EXIT.ok;
    }
  }
  switch (command) {
    case '--version':
    case '-V':
    case 'version':
      process.stdout.write(`dnswarden ${version()}\n`);
      return EXIT.ok;
    case 'serve': return serve(rest);
    case 'check-config': return checkConfig(rest);
    case 'replay': return replay(rest);
    case 'backup': return backup(rest);
    case 'quarantine':
    case 'sessions':
    case 'deny':
    case 'audit':
    case 'queries':
      return analystCommand(command, rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE);
      return command === undefined ? 64 : 0;
    default:
      process.stderr.write(`dnswarden: unknown command "${command}"\n${USAGE}`);
      return 64;
  }
}

const argv = process.argv.slice(2);
main(argv).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const { exit, code } = exitOf(err);
    // One line, always: node's own messages (parseArgs) can span several.
    const message = (err instanceof WardenError ? err.message : messageOf(err)).replace(/\s*\n\s*/g, ' ').trim();
    // --json: a script reads the failure as data too; stdout stays for results only.
    if (argv.includes('--json')) {
      const status = (err as { status?: unknown }).status;
      process.stderr.write(`${JSON.stringify({ error: { code, message, exit, ...(typeof status === 'number' ? { status } : {}) } })}\n`);
    } else {
      process.stderr.write(`dnswarden: ${message}\n`);
    }
    process.exit(exit);
  },
);
