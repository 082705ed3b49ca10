// A real redis-server for fleet tests: on a free loopback port, nothing saved to disk, stopped by its PID.
// Owns nothing but the child it spawns; `restart()` starts a fresh (empty) one on the same port.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** SIGKILL: Redis is gone at once, as in a crash or a partition. */
  kill(): Promise<void>;
  /** A new, empty redis-server on the same port. */
  restart(): Promise<void>;
  /** SIGSTOP / SIGCONT: connections stay open but nothing answers (a partition without a reset). */
  pause(): void;
  resume(): void;
  stop(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

function launch(port: number, extraArgs: readonly string[]): Promise<ChildProcess> {
  return new Promise((ok, fail) => {
    const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', ...extraArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => { proc.kill('SIGKILL'); fail(new Error(`redis-server did not start on ${port}:\n${out}`)); }, 15_000);
    const onData = (c: Buffer): void => {
      out += c.toString();
      if (out.includes('Ready to accept connections')) {
        clearTimeout(timer);
        ok(proc);
      }
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.once('exit', (code) => { clearTimeout(timer); fail(new Error(`redis-server exited (${code}):\n${out}`)); });
  });
}

function gone(proc: ChildProcess | undefined, signal: NodeJS.Signals): Promise<void> {
  if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((ok) => {
    proc.once('exit', () => ok());
    proc.kill(signal);
    if (signal === 'SIGTERM') proc.kill('SIGCONT'); // a paused server must run to act on SIGTERM
  });
}

/** `extraArgs`: more redis-server options, e.g. ['--requirepass', 'secret']. */
export async function startRedis(extraArgs: readonly string[] = []): Promise<RedisServer> {
  const port = await freePort();
  let proc: ChildProcess | undefined = await launch(port, extraArgs);
  return {
    port,
    url: `redis://127.0.0.1:${port}/0`,
    async kill() { await gone(proc, 'SIGKILL'); proc = undefined; },
    async restart() { await gone(proc, 'SIGKILL'); proc = await launch(port, extraArgs); },
    pause() { proc?.kill('SIGSTOP'); },
    resume() { proc?.kill('SIGCONT'); },
    async stop() { await gone(proc, 'SIGTERM'); proc = undefined; },
  };
}
