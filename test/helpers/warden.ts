// Starts dnswarden in-process through the lead's public API (parseConfig + startApp) on loopback
// port 0, with a test default config merged under the caller's partial one: a fresh storage dir,
// the given real upstream, one static session for 127.0.0.1/32, silent logs. Owns that temp dir
// and the app it started; never starts an upstream of its own.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/ops/config.js';
import { startApp, type App } from '../../src/app.js';
import type { Logger } from 'pino';

/** A config fragment: objects merge into the default, arrays and scalars replace. */
export type PartialConfig = { readonly [key: string]: unknown };

export interface UpstreamLike {
  readonly hostPort: string;
}

export interface WardenOptions {
  /** Upstream(s) for the default `upstreams` (ignored when the partial config sets `upstreams`). */
  readonly upstream?: UpstreamLike | readonly UpstreamLike[];
  /** Per-upstream timeout in the default `upstreams`. Default 1000 ms. */
  readonly upstreamTimeoutMs?: number;
  /** The app's logger (e.g. one writing to a stream the test reads); default: from `logging.level` (silent). */
  readonly logger?: Logger;
}

export interface Warden {
  readonly dns: { readonly address: string; readonly port: number };
  readonly adminUrl: string;
  readonly adminToken: string;
  readonly app: App;
  readonly storageDir: string;
  /** The raw (pre-parse) config the app was started with. */
  readonly config: Record<string, unknown>;
  /** fetch() against the admin API, with `Authorization: Bearer <token>` unless `token: null`. */
  admin(path: string, init?: { method?: string; body?: unknown; token?: string | null }): Promise<{ status: number; json: unknown; text: string; headers: Headers }>;
  close(): Promise<void>;
}

export const TEST_SESSION = { id: 'test-local', addresses: ['127.0.0.1/32'], type: 'interactive', user: 'tester', role: 'developer' } as const;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function deepMerge(base: Record<string, unknown>, over: PartialConfig): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const prev = out[key];
    out[key] = isPlainObject(prev) && isPlainObject(value) ? deepMerge(prev, value) : value;
  }
  return out;
}

/** The test default config (before the caller's partial is merged over it). */
export function defaultTestConfig(storageDir: string, token: string, opts: WardenOptions): Record<string, unknown> {
  const upstreams = opts.upstream === undefined ? [] : Array.isArray(opts.upstream) ? opts.upstream : [opts.upstream];
  return {
    listen: { dns: ['127.0.0.1:0'], admin: '127.0.0.1:0' },
    admin: { token },
    storage: { dir: storageDir },
    upstreams: upstreams.map((u: UpstreamLike) => ({ address: u.hostPort, timeout_ms: opts.upstreamTimeoutMs ?? 1000 })),
    sessions: { static: [{ ...TEST_SESSION, addresses: [...TEST_SESSION.addresses] }] },
    logging: { level: 'silent' },
  };
}

export async function startWarden(partial: PartialConfig = {}, opts: WardenOptions = {}): Promise<Warden> {
  if (partial['upstreams'] === undefined && opts.upstream === undefined) {
    throw new Error('startWarden: pass { upstream } (a started test upstream) or set upstreams in the partial config');
  }
  const storageDir = mkdtempSync(join(tmpdir(), 'dnswarden-warden-'));
  const token = `test-admin-${randomBytes(12).toString('hex')}`;
  const raw = deepMerge(defaultTestConfig(storageDir, token, opts), partial);
  let app: App;
  try {
    app = await startApp(parseConfig(raw), opts.logger === undefined ? {} : { logger: opts.logger });
  } catch (err) {
    rmSync(storageDir, { recursive: true, force: true });
    throw err;
  }
  const dns = app.dns[0];
  if (dns === undefined) throw new Error('startApp returned no DNS listener');
  let closed = false;
  return {
    dns: { address: dns.address, port: dns.port },
    adminUrl: app.adminUrl,
    adminToken: app.adminToken,
    app,
    storageDir,
    config: raw,
    async admin(path, init = {}) {
      const headers: Record<string, string> = {};
      const tok = init.token === undefined ? app.adminToken : init.token;
      if (tok !== null) headers['authorization'] = `Bearer ${tok}`;
      let body: string | undefined;
      if (init.body !== undefined) {
        headers['content-type'] = 'application/json';
        body = typeof init.body === 'string' ? init.body : JSON.stringify(init.body);
      }
      const res = await fetch(`${app.adminUrl}${path}`, { method: init.method ?? 'GET', headers, ...(body === undefined ? {} : { body }), signal: AbortSignal.timeout(10_000) });
      const text = await res.text();
      let json: unknown;
      try {
        json = text === '' ? undefined : JSON.parse(text);
      } catch {
        json = undefined;
      }
      return { status: res.status, json, text, headers: res.headers };
    },
    async close() {
      if (closed) return;
      closed = true;
      try {
        await app.close();
      } finally {
        rmSync(storageDir, { recursive: true, force: true });
      }
    },
  };
}

/** Value of one Prometheus sample, e.g. metricValue(text, 'dnswarden_cache_hits_total'); labels must all match. Sums matching series. */
export function metricValue(text: string, name: string, labels: Readonly<Record<string, string>> = {}): number | undefined {
  let total: number | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line === '') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (m === null || m[1] !== name) continue;
    const have: Record<string, string> = {};
    for (const lm of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) have[lm[1]!] = lm[2]!;
    if (!Object.entries(labels).every(([k, v]) => have[k] === v)) continue;
    total = (total ?? 0) + Number(m[3]);
  }
  return total;
}
