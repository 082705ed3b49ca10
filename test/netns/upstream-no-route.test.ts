// An upstream with no route to it, on a real Linux network stack: dnswarden runs (from the built CLI) inside a
// network namespace that has only loopback, so connecting to 192.0.2.1 fails at once with ENETUNREACH and no
// packet can leave the namespace. That upstream must count as a network failure of its own (metric), the next
// upstream (NSD on the namespace's loopback) must still answer, and with no other upstream the agent gets
// SERVFAIL + EDE 23 (Network Error) within resolver.total_timeout_ms — never EDE 0 "internal error".
// Needs root and netns support: without them this file FAILS, saying what is missing (it never skips).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { assertNetnsCapable, dig, nsRun, nsRunOk, removeStaleNamespaces, run, runOk, startDaemon, startNsd, waitOrStop, type Daemon } from '../helpers/netns.js';
import { FIXTURE, ZONES_DIR } from '../helpers/upstream.js';

const CLI = resolve('dist/src/cli.js');
const UNROUTABLE = '192.0.2.1:53'; // TEST-NET-1: the namespace has no route to it (only loopback)
const TOTAL_TIMEOUT_MS = 2500;
const adminToken = `noroute-admin-${randomBytes(16).toString('hex')}`;

let ns: string | undefined;
let dir: string | undefined;
const daemons: Daemon[] = [];

/** A dnswarden from the built CLI inside `ns`, answering on 127.0.0.1:`dnsPort`, admin on 127.0.0.1:`adminPort`. */
async function startWardenIn(name: string, dnsPort: number, adminPort: number, upstreams: readonly string[]): Promise<void> {
  const config = join(dir!, `${name}.yaml`);
  writeFileSync(
    config,
    `# written by test/netns/upstream-no-route.test.ts
listen:
  dns: ["127.0.0.1:${dnsPort}"]
  admin: "127.0.0.1:${adminPort}"
admin:
  token: "${adminToken}"
storage:
  dir: "${join(dir!, `${name}-store`)}"
upstreams:
${upstreams.map((u) => `  - address: "${u}"\n    timeout_ms: 1000`).join('\n')}
resolver:
  total_timeout_ms: ${TOTAL_TIMEOUT_MS}
sessions:
  static:
    - id: agent-1
      addresses: ["127.0.0.1/32"]
      type: batch
      user: alice
      role: researcher
logging:
  level: info
`,
  );
  const check = await run(process.execPath, [CLI, 'check-config', config]);
  expect(check.code, `check-config: ${check.stdout}${check.stderr}`).toBe(0);
  const warden = startDaemon(name, ns!, process.execPath, [CLI, 'serve', '--config', config]);
  daemons.push(warden);
  await waitOrStop(warden, warden.waitFor('"dnswarden ready" log line', () => warden.output.includes('"msg":"dnswarden ready"'), 20_000));
}

/** /metrics of the dnswarden whose admin API is on 127.0.0.1:`adminPort` inside the namespace. */
async function metrics(adminPort: number): Promise<string> {
  const script = `
    const res = await fetch(process.argv[1], { headers: { authorization: 'Bearer ' + process.argv[2] }, signal: AbortSignal.timeout(5000) });
    process.stdout.write(await res.text());`;
  const r = await nsRunOk(ns!, process.execPath, ['--input-type=module', '-e', script, `http://127.0.0.1:${adminPort}/metrics`, adminToken]);
  return r.stdout;
}

function failures(text: string, upstream: string, reason: string): number {
  const line = text.split('\n').find((l) => l.startsWith('dnswarden_upstream_failures_total{') && l.includes(`upstream="${upstream}"`) && l.includes(`reason="${reason}"`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

afterAll(async () => {
  for (const d of daemons.splice(0).reverse()) await d.stop();
  if (ns !== undefined) await run('ip', ['netns', 'del', ns]);
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe('an upstream with no route to it (dnswarden in a loopback-only network namespace)', () => {
  it('builds the namespace, an NSD on its loopback, and two dnswardens from the built CLI', async () => {
    await assertNetnsCapable(['ip', 'dig', 'nsd']);
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
    await removeStaleNamespaces();
    ns = `dwt${process.pid}-noroute-${randomBytes(2).toString('hex')}`;
    await runOk('ip', ['netns', 'add', ns]);
    await nsRunOk(ns, 'ip', ['link', 'set', 'lo', 'up']);
    // Only loopback: there is no interface a packet to 192.0.2.1 could leave by.
    const links = await nsRunOk(ns, 'ip', ['-o', 'link', 'show']);
    expect(links.stdout.trim().split('\n').map((l) => l.split(':')[1]!.trim())).toEqual(['lo']);
    expect((await nsRun(ns, 'ip', ['route', 'get', '192.0.2.1'])).code).not.toBe(0); // "Network is unreachable"

    dir = mkdtempSync(join(tmpdir(), 'dnswarden-noroute-'));
    daemons.push(await startNsd('noroute-nsd', ns, ['127.0.0.1'], [{ name: FIXTURE.zone, file: join(ZONES_DIR, 'dnswarden.test.zone') }], { server: '127.0.0.1', name: FIXTURE.a.name }));
    await startWardenIn('failover', 5300, 9153, [UNROUTABLE, '127.0.0.1:53']);
    await startWardenIn('only-unroutable', 5301, 9154, [UNROUTABLE]);
  }, 60_000);

  it('fails over to the next upstream, and counts the unroutable one as a network failure', async () => {
    expect(ns, 'the namespace was not built (see the first test)').toBeDefined();
    for (const name of [FIXTURE.a.name, FIXTURE.multiA.name]) {
      const r = await dig(ns!, ['-p', '5300', '@127.0.0.1', name, 'A'], 5);
      expect(r.status, r.stdout).toBe('NOERROR');
      expect(r.addresses.length).toBeGreaterThan(0);
    }
    const text = await metrics(9153);
    expect(failures(text, UNROUTABLE, 'network'), text).toBeGreaterThanOrEqual(1);
    expect(failures(text, '127.0.0.1:53', 'network')).toBe(0);
  });

  it('with no other upstream: SERVFAIL + EDE 23 (Network Error) within total_timeout_ms, counted per upstream', async () => {
    expect(ns, 'the namespace was not built (see the first test)').toBeDefined();
    const t0 = performance.now();
    const r = await dig(ns!, ['-p', '5301', '@127.0.0.1', FIXTURE.a.name, 'A'], 5);
    const elapsedMs = performance.now() - t0;
    expect(r.status, r.stdout).toBe('SERVFAIL');
    expect(r.ede, r.stdout).toMatch(/^23 \(Network Error\)/);
    // Generous: the wait includes starting dig inside the namespace; the point is "not a timeout past the budget".
    expect(elapsedMs).toBeLessThan(TOTAL_TIMEOUT_MS + 3000);
    const text = await metrics(9154);
    expect(failures(text, UNROUTABLE, 'network'), text).toBeGreaterThanOrEqual(1);
  });
});
