// The configured local zones and response policy zones, loaded from their files as one unit: every
// file parsed and checked, or a ConfigError naming the config field and file:line (so a bad file fails
// `serve`, `check-config` and a reload alike, and a reload keeps what ran before). `ZoneSet.find` picks
// the zone that answers a name (the longest origin that contains it); `pollFiles` notices that files
// changed. Never answers a query (zone.ts does), never judges one (policy does), never decides what a
// change means (the composition root does); its only I/O is reading and stat-ing the files it is given.
import { statSync } from 'node:fs';
import { ConfigError, messageOf } from '../errors.js';
import { parseMasterFile } from './master-file.js';
import { loadRpzZone, RpzSet } from './rpz.js';
import { Zone } from './zone.js';
import type { Config } from '../ops/config.js';
import type { Metrics } from '../ops/telemetry.js';

export interface ZoneFileEntry {
  readonly name: string;
  /** Absolute (config.ts resolves it against the config file's directory). */
  readonly file: string;
}

/** The local zones, most specific first: a name below `lab.corp.example` is that zone's, not `corp.example`'s. */
export class ZoneSet {
  private readonly byDepth: readonly Zone[];

  constructor(readonly zones: readonly Zone[]) {
    this.byDepth = [...zones].sort((a, b) => b.origin.length - a.origin.length);
  }

  get size(): number {
    return this.zones.length;
  }

  /** The zone a name is at or below, or undefined (the common case: one string test per zone). */
  find(qname: string): Zone | undefined {
    for (const z of this.byDepth) if (z.contains(qname)) return z;
    return undefined;
  }
}

export const NO_ZONES = new ZoneSet([]);
export const NO_RPZ = new RpzSet([]);

/** Wraps a parse error with the config field that named the file. */
function underField<T>(field: string, load: () => T): T {
  try {
    return load();
  } catch (err) {
    if (err instanceof ConfigError) throw new ConfigError(field, err.message);
    throw new ConfigError(field, messageOf(err));
  }
}

/** Reads `zones[]`: each file parsed with its name as $ORIGIN and checked as a whole. Throws ConfigError. */
export function loadZoneSet(entries: readonly ZoneFileEntry[]): ZoneSet {
  return new ZoneSet(entries.map((e, i) => underField(`zones[${i}].file`, () => new Zone(e.name, parseMasterFile(e.file, { origin: e.name }), e.file))));
}

/** Reads `policy.rpz[]` in order (first match wins). Throws ConfigError. */
export function loadRpzSet(entries: readonly ZoneFileEntry[]): RpzSet {
  return new RpzSet(entries.map((e, i) => underField(`policy.rpz[${i}].file`, () => loadRpzZone(e.name, e.file))));
}

/**
 * Calls `changed` when the files (whatever `entries()` names now) changed and then held still for one more
 * period: a feed being written is not read half-way. `reset` takes the files as they are now as seen.
 */
export function pollFiles(entries: () => readonly ZoneFileEntry[], periodMs: number, changed: () => void): { reset(): void; stop(): void } {
  let seen = fileStamps(entries());
  let pending: string | undefined;
  const timer = setInterval(() => {
    const list = entries();
    if (list.length === 0) return;
    const stamp = fileStamps(list);
    if (stamp === seen) { pending = undefined; return; }
    if (stamp !== pending) { pending = stamp; return; }
    seen = stamp;
    pending = undefined;
    changed();
  }, periodMs);
  timer.unref();
  return {
    reset: () => { seen = fileStamps(entries()); pending = undefined; },
    stop: () => clearInterval(timer),
  };
}

/** The files' modification times and sizes, to notice an edit (an mtime poll: fs.watch misses renames on some filesystems). */
function fileStamps(entries: readonly ZoneFileEntry[]): string {
  return entries.map((e) => {
    try {
      const s = statSync(e.file);
      return `${s.mtimeMs}:${s.size}:${s.ino}`;
    } catch {
      return 'missing';
    }
  }).join('|');
}

/** Every configured zone and policy zone file, parsed and checked (`check-config`, a supervisor's reload). Throws ConfigError. */
export function loadZoneFiles(config: Pick<Config, 'zones' | 'policy'>): { zones: ZoneSet; rpz: RpzSet } {
  return { zones: loadZoneSet(config.zones), rpz: loadRpzSet(config.policy.rpz) };
}

/** Each configured zone's series at 0 from the start (see telemetry.ts: a first 1 has no rise to alert on). */
export function declareZoneSeries(metrics: Metrics, config: Pick<Config, 'zones' | 'policy'>): void {
  for (const z of config.zones) for (const rcode of [0, 3]) metrics.localAnswers.declare(metrics.localAnswerKey(z.name, rcode)); // NOERROR, NXDOMAIN
  for (const z of config.policy.rpz) for (const action of ['nxdomain', 'nodata', 'drop', 'local']) metrics.rpzHits.inc({ zone: z.name, action }, 0);
}
