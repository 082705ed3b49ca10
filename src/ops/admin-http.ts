// The admin HTTP API (node:http): a route table, bearer tokens by kind, JSON errors
// `{ "error": { "code", "message" } }`, /metrics, /healthz (liveness) and /readyz (readiness checks).
// Every analyst action is audited with its actor (the token's name). Never logs a token.
// Also serves the analyst console's static shell and assets under /ui/ (public, holding no data: every data
// call the page makes is an API call with the analyst's bearer token), under a strict Content-Security-Policy.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createHash, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { splitHostPort } from './config.js';
import { WardenError, messageOf, type ErrorCode } from '../errors.js';

export type TokenKind = 'admin' | 'analyst' | 'viewer' | 'runtime';
export interface Caller {
  readonly name: string;
  readonly kind: TokenKind;
}
export interface ApiToken extends Caller {
  readonly token: string;
}

export interface Request {
  readonly method: string;
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  readonly body: unknown;
  readonly caller: Caller;
}
export interface Response {
  readonly status: number;
  readonly json?: unknown;
  readonly text?: string;
  readonly contentType?: string;
}

export interface Route {
  readonly method: 'GET' | 'POST' | 'DELETE';
  readonly path: string; // '/v1/quarantines/:id/release'
  readonly allow: readonly TokenKind[]; // [] = open (no token)
  readonly handler: (req: Request) => Response | Promise<Response>;
}

/**
 * One readiness condition: `check` returns why the instance should get no traffic now, or null when
 * it may. Checks are cheap and never do I/O (they read state kept current elsewhere): /readyz is open
 * and may be polled often. Another condition is one more entry in the list (see app.ts).
 */
export interface ReadinessCheck {
  readonly name: string;
  readonly check: () => string | null;
}

/** 200 `{status:"ready"}`, or 503 `{status:"not_ready", failing:[{check, reason}]}` naming every failing check. */
export function readiness(checks: readonly ReadinessCheck[]): Response {
  const failing: { check: string; reason: string }[] = [];
  for (const c of checks) {
    let reason: string | null;
    try {
      reason = c.check();
    } catch (err) {
      reason = `check failed: ${messageOf(err)}`; // a broken check is a reason, not a 500
    }
    if (reason !== null) failing.push({ check: c.name, reason });
  }
  return failing.length === 0 ? { status: 200, json: { status: 'ready' } } : { status: 503, json: { status: 'not_ready', failing } };
}

const STATUS_OF: Partial<Record<ErrorCode, number>> = {
  ERR_BAD_REQUEST: 400,
  ERR_BAD_TOKEN: 400,
  ERR_BAD_CLAIMS: 400,
  ERR_CONFIG: 400,
  ERR_BAD_SIGNATURE: 401,
  ERR_UNKNOWN_KEY: 401,
  ERR_TOKEN_EXPIRED: 401,
  ERR_TOKEN_REVOKED: 401,
  ERR_UNAUTHORIZED: 401,
  ERR_FORBIDDEN: 403,
  ERR_NOT_FOUND: 404,
  ERR_SESSION_CONFLICT: 409,
  ERR_FLEET_UNAVAILABLE: 503,
};
const MAX_BODY_BYTES = 64 * 1024;

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

export interface AdminServer {
  readonly url: string;
  close(): Promise<void>;
}

// The console: no inline script or style, no eval, nothing from elsewhere; API calls to this origin only.
export const CONSOLE_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
  + "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
const CONSOLE_HEADERS = {
  'content-security-policy': CONSOLE_CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'cache-control': 'no-store',
};
const ASSET_TYPES: Readonly<Record<string, string>> = { '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.html': 'text/html; charset=utf-8', '.svg': 'image/svg+xml' };

/** The console as built by `npm run build` (esbuild → dist/console), found from the package root whether running from src/ or dist/. */
export function consoleAssetsDir(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json'))) return join(dir, 'dist', 'console');
    dir = dirname(dir);
  }
  return undefined;
}

interface ConsoleFiles {
  readonly shell: Buffer | undefined;
  readonly assets: ReadonlyMap<string, { readonly body: Buffer; readonly type: string }>;
}

/** Read once at start: the shell (index.html) and the flat list of assets beside it; nothing else is ever served. */
function loadConsole(dir: string | undefined): ConsoleFiles {
  const assets = new Map<string, { body: Buffer; type: string }>();
  if (dir === undefined || !existsSync(join(dir, 'index.html'))) return { shell: undefined, assets };
  for (const f of readdirSync(dir)) {
    const type = ASSET_TYPES[f.slice(f.lastIndexOf('.'))];
    if (type !== undefined && f !== 'index.html') assets.set(f, { body: readFileSync(join(dir, f)), type });
  }
  return { shell: readFileSync(join(dir, 'index.html')), assets };
}

/** GET /ui/assets/<file> → that asset; any other /ui/ path → the shell (every console address is bookmarkable). */
function serveConsole(files: ConsoleFiles, pathname: string, method: string, res: ServerResponse): void {
  if (method !== 'GET' && method !== 'HEAD') {
    res.writeHead(405, { ...CONSOLE_HEADERS, allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' });
    res.end('method not allowed\n');
    return;
  }
  if (pathname === '/ui') {
    res.writeHead(308, { ...CONSOLE_HEADERS, location: '/ui/' });
    res.end();
    return;
  }
  if (files.shell === undefined) {
    res.writeHead(503, { ...CONSOLE_HEADERS, 'content-type': 'text/plain; charset=utf-8' });
    res.end('the console is not built: run `npm run build`\n');
    return;
  }
  let body = files.shell;
  let type = 'text/html; charset=utf-8';
  if (pathname.startsWith('/ui/assets/')) {
    const asset = files.assets.get(pathname.slice('/ui/assets/'.length));
    if (asset === undefined) {
      res.writeHead(404, { ...CONSOLE_HEADERS, 'content-type': 'text/plain; charset=utf-8' });
      res.end('no such asset\n');
      return;
    }
    ({ body, type } = asset);
  }
  res.writeHead(200, { ...CONSOLE_HEADERS, 'content-type': type, 'content-length': body.length });
  res.end(method === 'HEAD' ? undefined : body);
}

export interface AdminOptions {
  /** Where the built console is (default: `consoleAssetsDir()`). */
  readonly consoleDir?: string;
}

export async function listenAdmin(address: string, routes: readonly Route[], tokens: () => readonly ApiToken[], log: Logger, options: AdminOptions = {}): Promise<AdminServer> {
  const compiled = routes.map((r) => ({ ...r, parts: r.path.split('/').slice(1) }));
  const consoleFiles = loadConsole(options.consoleDir ?? consoleAssetsDir());

  // Constant-time comparison over digests, so neither content nor length leaks through timing.
  function authenticate(header: string | undefined): Caller | undefined {
    if (header === undefined || !header.startsWith('Bearer ')) return undefined;
    const presented = digest(header.slice(7).trim());
    let found: Caller | undefined;
    for (const t of tokens()) if (timingSafeEqual(presented, digest(t.token)) && found === undefined) found = { name: t.name, kind: t.kind };
    return found;
  }

  async function dispatch(req: IncomingMessage): Promise<Response> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const segments = url.pathname.split('/').slice(1);
    let pathMatched = false;
    for (const route of compiled) {
      const params = matchPath(route.parts, segments);
      if (params === undefined) continue;
      pathMatched = true;
      if (route.method !== req.method) continue;
      let caller: Caller = { name: 'anonymous', kind: 'viewer' };
      if (route.allow.length > 0) {
        const found = authenticate(req.headers.authorization);
        if (found === undefined) throw new WardenError('ERR_UNAUTHORIZED', 'missing or unknown bearer token (Authorization: Bearer <token>)');
        if (!route.allow.includes(found.kind)) throw new WardenError('ERR_FORBIDDEN', `a ${found.kind} token may not ${route.method} ${route.path}`);
        caller = found;
      }
      const body = req.method === 'POST' ? await readJson(req) : undefined;
      return route.handler({ method: req.method, params, query: url.searchParams, body, caller });
    }
    // Without a valid token, nothing about which paths exist leaks: 401 before 404/405.
    if (authenticate(req.headers.authorization) === undefined) throw new WardenError('ERR_UNAUTHORIZED', 'missing or unknown bearer token (Authorization: Bearer <token>)');
    if (pathMatched) return { status: 405, json: { error: { code: 'ERR_METHOD', message: `${req.method} not allowed on ${url.pathname}` } } };
    throw new WardenError('ERR_NOT_FOUND', `no endpoint ${url.pathname}`);
  }

  const server: Server = createServer((req, res) => {
    // A request target URL() cannot read ("//", "//[") is the client's error, never a crash of the process.
    let pathname: string;
    try {
      pathname = new URL(req.url ?? '/', 'http://admin').pathname;
    } catch {
      send(res, { status: 400, json: { error: { code: 'ERR_BAD_REQUEST', message: 'the request target is not a valid path' } } });
      return;
    }
    if (pathname === '/ui' || pathname.startsWith('/ui/')) {
      serveConsole(consoleFiles, pathname, req.method ?? 'GET', res);
      return;
    }
    dispatch(req).then(
      (response) => send(res, response),
      (err: unknown) => {
        if (err instanceof WardenError) {
          send(res, { status: STATUS_OF[err.code] ?? 500, json: { error: { code: err.code, message: err.message } } });
          return;
        }
        log.error({ err: messageOf(err), path: req.url, method: req.method }, 'admin request failed');
        send(res, { status: 500, json: { error: { code: 'ERR_INTERNAL', message: 'internal error (see the server log)' } } });
      },
    );
  });
  server.requestTimeout = 30_000;
  server.headersTimeout = 10_000;
  const { host, port } = splitHostPort(address)!;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const bound = server.address();
  const boundPort = typeof bound === 'object' && bound !== null ? bound.port : port;
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${boundPort}`;
  return {
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function matchPath(pattern: readonly string[], segments: readonly string[]): Record<string, string> | undefined {
  if (pattern.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const s = segments[i]!;
    if (p.startsWith(':')) {
      if (s === '') return undefined;
      try {
        params[p.slice(1)] = decodeURIComponent(s);
      } catch {
        return undefined;
      }
    } else if (p !== s) return undefined;
  }
  return params;
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new WardenError('ERR_BAD_REQUEST', `request body over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new WardenError('ERR_BAD_REQUEST', 'request body is not valid JSON');
  }
}

function send(res: ServerResponse, r: Response): void {
  if (r.text !== undefined) {
    res.writeHead(r.status, { 'content-type': r.contentType ?? 'text/plain; charset=utf-8' });
    res.end(r.text);
  } else if (r.json !== undefined) {
    res.writeHead(r.status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(r.json));
  } else {
    res.writeHead(r.status);
    res.end();
  }
}
