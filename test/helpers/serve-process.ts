// The built CLI as a user runs it: `node dist/src/cli.js serve --config FILE`, for process tests
// (kill -9, restart, signals). Owns nothing but the child it spawns; the caller stops it.
import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';

export const CLI = join(resolve(import.meta.dirname, '../..'), 'dist/src/cli.js');

/** Spawns `serve --config configPath` in `cwd`; stdout and stderr go to `onOutput`. */
export function spawnServe(configPath: string, cwd: string, onOutput: (text: string) => void): ChildProcess {
  const proc = spawn(process.execPath, [CLI, 'serve', '--config', configPath], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout?.on('data', (c: Buffer) => onOutput(c.toString()));
  proc.stderr?.on('data', (c: Buffer) => onOutput(c.toString()));
  return proc;
}

/** Resolves with the exit code/signal (at once if it has exited); rejects after `timeoutMs`. */
export function exited(proc: ChildProcess, timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((ok, fail) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return ok({ code: proc.exitCode, signal: proc.signalCode });
    const timer = setTimeout(() => fail(new Error(`process ${proc.pid} did not exit within ${timeoutMs} ms`)), timeoutMs);
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      ok({ code, signal });
    });
  });
}

/**
 * Polls GET /healthz on the admin port until it answers 200, bounded by `timeoutMs`. The admin server starts
 * after the DNS listeners, so a DNS answer does not mean the admin port is open yet (under load the gap
 * is long enough for a request in between to get ECONNREFUSED).
 */
export async function waitAdmin(adminPort: number, proc: ChildProcess, output: () => string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`serve exited (${proc.exitCode ?? proc.signalCode}):\n${output()}`);
    try {
      const res = await fetch(`http://127.0.0.1:${adminPort}/healthz`, { signal: AbortSignal.timeout(2000) });
      if (res.status === 200) return;
      last = res.status;
    } catch (err) {
      last = err;
    }
    await new Promise((ok) => setTimeout(ok, 100));
  }
  throw new Error(`the admin API on 127.0.0.1:${adminPort} did not answer /healthz 200 within ${timeoutMs} ms; last: ${String(last)}\n${output()}`);
}

export interface AdminReply {
  readonly status: number;
  /** The parsed JSON body (each test reads the shape its endpoint answers), undefined when it is not JSON. */
  readonly json: any;
  readonly text: string;
}

/** One request to a served admin API with a bearer token; a JSON body is sent as JSON, the reply parsed when it is JSON. */
export async function adminRequest(adminUrl: string, token: string, path: string, init: { method?: string; body?: unknown } = {}): Promise<AdminReply> {
  const res = await fetch(`${adminUrl}${path}`, {
    method: init.method ?? 'GET',
    headers: { authorization: `Bearer ${token}`, ...(init.body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  });
  const text = await res.text();
  let json: unknown;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, json, text };
}

/**
 * The first JSON log line whose msg is `msg` in `output()` past its first `from` characters, parsed; polled every
 * `pollMs`, bounded by `timeoutMs`; fails at once, with the output, when the process exits first.
 */
export async function waitLogLine(proc: ChildProcess, output: () => string, msg: string, opts: { from?: number; timeoutMs?: number; pollMs?: number; label?: string } = {}): Promise<Record<string, unknown>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  const label = opts.label ?? 'serve';
  while (Date.now() < deadline) {
    for (const line of output().slice(opts.from ?? 0).split('\n')) if (line.includes(`"msg":"${msg}"`)) return JSON.parse(line) as Record<string, unknown>;
    if (proc.exitCode !== null) throw new Error(`${label} exited:\n${output()}`);
    await new Promise((ok) => setTimeout(ok, opts.pollMs ?? 50));
  }
  throw new Error(`${label}: no "${msg}" line:\n${output()}`);
}
