// README "Registering a session locally", run as written: the two commands of its sh block, from the repository
// root — `npm start` with examples/local/dnswarden.yaml, then examples/local/register.mjs — and a newcomer's
// session is registered, its address answered, another address still REFUSED. Runs in a network namespace of its
// own (the commands use the fixed ports 5353/9153, which other tests or a developer's server may hold); the
// example's scratch store, data/examples-local, is removed before and after.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNetnsCapable, dig, nsRun, run } from '../helpers/netns.js';

const ROOT = resolve(import.meta.dirname, '../..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const STORE = join(ROOT, 'data/examples-local');
const NS = `dwex${randomBytes(4).toString('hex')}`;

/** The command lines of the sh block under the README heading (comments kept: sh ignores them). */
function commandsUnder(heading: string): string[] {
  const at = README.indexOf(heading);
  expect(at, `README has no "${heading}"`).toBeGreaterThan(-1);
  const block = /```sh\n([\s\S]*?)```/.exec(README.slice(at))![1]!;
  return block.split('\n').filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
}

let server: ChildProcess | undefined;
let output = '';
let nsMade = false;
const sleep = (ms: number) => new Promise((ok) => setTimeout(ok, ms));

beforeAll(async () => {
  await assertNetnsCapable(['ip', 'dig', 'npm']);
  rmSync(STORE, { recursive: true, force: true });
  expect((await run('ip', ['netns', 'add', NS])).code).toBe(0);
  nsMade = true;
  expect((await nsRun(NS, 'ip', ['link', 'set', 'lo', 'up'])).code).toBe(0);
}, 30_000);

afterAll(async () => {
  if (server?.pid !== undefined && server.exitCode === null) {
    process.kill(-server.pid, 'SIGTERM'); // npm and the node it started: the group this test created
    const deadline = Date.now() + 10_000;
    while (server.exitCode === null && server.signalCode === null && Date.now() < deadline) await sleep(100);
    if (server.exitCode === null && server.signalCode === null) process.kill(-server.pid, 'SIGKILL');
  }
  if (nsMade) await run('ip', ['netns', 'del', NS]);
  rmSync(STORE, { recursive: true, force: true });
}, 30_000);

describe('README: registering a session locally, in two commands', () => {
  let commands: string[];

  it('the README block has exactly two commands: start the server, register a session', () => {
    commands = commandsUnder('#### Registering a session locally');
    expect(commands).toHaveLength(2);
    expect(commands[0]).toMatch(/^npm start -- --config examples\/local\/dnswarden\.yaml/);
    expect(commands[1]).toMatch(/^node examples\/local\/register\.mjs agent-1 127\.0\.0\.2 batch/);
  });

  it('command 1 starts dnswarden (npm start builds first)', async () => {
    server = spawn('ip', ['netns', 'exec', NS, 'sh', '-c', commands[0]!], { cwd: ROOT, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    server.stdout!.on('data', (c: Buffer) => void (output += c.toString()));
    server.stderr!.on('data', (c: Buffer) => void (output += c.toString()));
    const deadline = Date.now() + 120_000;
    while (!output.includes('"msg":"dnswarden ready"') && server.exitCode === null && Date.now() < deadline) await sleep(200);
    expect(output, output).toContain('"msg":"dnswarden ready"');
  }, 130_000);

  it('command 2 registers agent-1 (batch) for 127.0.0.2, with the example key and runtime token', async () => {
    const r = await nsRun(NS, 'sh', ['-c', `cd "$1" && ${commands[1]!}`, 'sh', ROOT], { timeoutMs: 30_000 });
    expect(r.code, `${r.stdout}${r.stderr}`).toBe(0);
    const session = (JSON.parse(r.stdout) as { session: { id: string; type: string; addresses: string[]; origin: string } }).session;
    expect(session).toMatchObject({ id: 'agent-1', type: 'batch', addresses: ['127.0.0.2/32'], origin: 'registered' });
  }, 40_000);

  it('the registered address is now served; an unregistered one is still REFUSED with EDE 18', async () => {
    // No upstream is reachable inside this namespace: an answer is SERVFAIL, but it is not a refusal.
    const served = await dig(NS, ['@127.0.0.1', '-p', '5353', '-b', '127.0.0.2', 'example.com'], 5);
    expect(served.status, served.stdout).toBeDefined();
    expect(served.status).not.toBe('REFUSED');
    const refused = await dig(NS, ['@127.0.0.1', '-p', '5353', '-b', '127.0.0.3', 'example.com']);
    expect(refused.status).toBe('REFUSED');
    expect(refused.ede).toMatch(/^18 \(Prohibited\)/);
  }, 30_000);
});
