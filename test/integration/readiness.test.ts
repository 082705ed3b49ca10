// GET /readyz (readiness) next to GET /healthz (liveness), over the real admin socket:
// - open (no token), 200 at start before any upstream was tried;
// - 503 naming the upstreams as soon as the latest attempt to every upstream failed, 200 again once one answers
//   (asked again by dnswarden itself: no client traffic needed);
// - one dead upstream out of two is not "not ready";
// - 503 naming the store while its disk is full (a real 2 MB tmpfs filled up), 200 again once there is room.
// /healthz stays 200 throughout: a pod that cannot reach its upstreams is taken out of the Service, not restarted.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { query } from '../helpers/dns-client.js';
import { closedPort, FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { startWarden, type Warden } from '../helpers/warden.js';

interface Readiness {
  readonly status: string;
  readonly failing?: readonly { readonly check: string; readonly reason: string }[];
}

async function readyz(w: Warden): Promise<{ status: number; body: Readiness }> {
  const res = await w.admin('/readyz', { token: null });
  return { status: res.status, body: res.json as Readiness };
}

/** Polls until `cond` holds (generous bound: the CPU is shared). */
async function eventually<T>(what: string, get: () => Promise<T>, cond: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: T = await get();
  while (!cond(last)) {
    if (Date.now() > until) throw new Error(`${what}: not within ${timeoutMs} ms; last: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 200));
    last = await get();
  }
  return last;
}

describe('GET /readyz: upstreams', () => {
  let upstream: Upstream;
  let warden: Warden;
  beforeAll(async () => {
    upstream = await startUpstream();
    warden = await startWarden({}, { upstream });
  });
  afterAll(async () => {
    await warden?.close();
    await upstream?.stop();
  });

  it('is open and ready before any upstream was tried; /healthz is open too', async () => {
    expect(await readyz(warden)).toEqual({ status: 200, body: { status: 'ready' } });
    expect((await warden.admin('/healthz', { token: null })).status).toBe(200);
  });

  it('turns 503 naming the upstream once its latest attempt failed, whatever it answered before; ready again once it answers', async () => {
    expect((await query({ server: warden.dns, name: FIXTURE.a.name, type: 'A' })).rcode).toBe('NOERROR');
    expect((await readyz(warden)).status).toBe(200);

    await upstream.pause();
    // A name not in the cache, so the query goes to the (now down) upstream.
    expect((await query({ server: warden.dns, name: FIXTURE.txt.name, type: 'TXT', timeoutMs: 10_000 })).rcode).toBe('SERVFAIL');
    const down = await readyz(warden);
    expect(down.status).toBe(503);
    expect(down.body.status).toBe('not_ready');
    expect(down.body.failing).toHaveLength(1);
    expect(down.body.failing![0]!.check).toBe('upstreams');
    expect(down.body.failing![0]!.reason).toBe('the latest attempt to every upstream failed (1: network)');
    expect(JSON.stringify(down.body)).not.toContain(String(upstream.port)); // open endpoint: no upstream address
    expect((await warden.admin('/healthz', { token: null })).status).toBe(200); // liveness is not readiness

    // Recovery needs no client traffic (a pod out of its Service gets none): dnswarden asks again by itself.
    const before = (await warden.admin('/metrics')).text;
    await upstream.restart();
    expect(await eventually('ready again without client queries', () => readyz(warden), (r) => r.status === 200)).toEqual({ status: 200, body: { status: 'ready' } });
    expect((await warden.admin('/metrics')).text.match(/^dnswarden_queries_total.*$/gm)).toEqual(before.match(/^dnswarden_queries_total.*$/gm));
    expect((await query({ server: warden.dns, name: FIXTURE.mx.name, type: 'MX', timeoutMs: 10_000 })).rcode).toBe('NOERROR');
  });
});

describe('GET /readyz: one dead upstream out of two', () => {
  let upstream: Upstream;
  let warden: Warden;
  beforeAll(async () => {
    upstream = await startUpstream();
    const dead = await closedPort();
    warden = await startWarden({}, { upstream: [{ hostPort: `127.0.0.1:${dead}` }, upstream] });
  });
  afterAll(async () => {
    await warden?.close();
    await upstream?.stop();
  });

  it('stays ready while the latest attempt to one upstream succeeded', async () => {
    expect((await query({ server: warden.dns, name: FIXTURE.a.name, type: 'A', timeoutMs: 10_000 })).rcode).toBe('NOERROR');
    expect((await query({ server: warden.dns, name: FIXTURE.txt.name, type: 'TXT', timeoutMs: 10_000 })).rcode).toBe('NOERROR');
    const metrics = (await warden.admin('/metrics')).text;
    expect(metrics).toMatch(/dnswarden_upstream_failures_total\{[^}]*reason="network"[^}]*\} [1-9]/); // the dead one was tried
    expect(await readyz(warden)).toEqual({ status: 200, body: { status: 'ready' } });
  });
});

describe('GET /readyz: the store', () => {
  let upstream: Upstream;
  let warden: Warden | undefined;
  let mountPoint: string;
  beforeAll(async () => {
    upstream = await startUpstream();
    mountPoint = mkdtempSync(join(tmpdir(), 'dnswarden-readyz-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', mountPoint]);
    warden = await startWarden({ storage: { dir: join(mountPoint, 'store') } }, { upstream });
  });
  afterAll(async () => {
    await warden?.close();
    await upstream?.stop();
    try {
      execFileSync('umount', [mountPoint]);
    } finally {
      rmSync(mountPoint, { recursive: true, force: true });
    }
  });

  it('turns 503 naming the store while its disk is full, and ready again once there is room', async () => {
    const w = warden!;
    expect(await readyz(w)).toEqual({ status: 200, body: { status: 'ready' } });
    // Fill the file system to the last block: the store's next write needs a block it cannot get.
    const filler = join(mountPoint, 'filler');
    const chunk = Buffer.alloc(64 * 1024, 1);
    let written = 0;
    try {
      for (let i = 0; i < 64; i++) { writeFileSync(filler, chunk, { flag: 'a' }); written++; }
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
    }
    expect(written).toBeLessThan(64); // the tmpfs (2 MB) is full
    try {
      for (let i = 0; i < 64; i++) writeFileSync(filler, Buffer.alloc(4096, 1), { flag: 'a' });
    } catch { /* the last blocks, until ENOSPC */ }

    const down = await eventually('503 for the store', () => readyz(w), (r) => r.status === 503);
    expect(down.body.status).toBe('not_ready');
    expect(down.body.failing!.map((f) => f.check)).toEqual(['store']);
    expect(down.body.failing![0]!.reason).toMatch(/^the store cannot be written: /);
    expect(down.body.failing![0]!.reason).not.toContain(mountPoint); // open endpoint: no paths
    expect((await w.admin('/healthz', { token: null })).status).toBe(200);

    unlinkSync(filler);
    expect(await eventually('ready again', () => readyz(w), (r) => r.status === 200)).toEqual({ status: 200, body: { status: 'ready' } });
  });
});

describe('deployments use each endpoint for its job', () => {
  const ROOT = resolve(import.meta.dirname, '../..');
  it('Kubernetes: readinessProbe on /readyz, livenessProbe on /healthz', () => {
    const docs = parseAllDocuments(readFileSync(join(ROOT, 'deploy/kubernetes/20-daemonset.yaml'), 'utf8')).map((d) => d.toJS() as { kind?: string; spec?: { template?: { spec?: { containers?: { name: string; readinessProbe?: { httpGet?: { path?: string } }; livenessProbe?: { httpGet?: { path?: string } } }[] } } } });
    const container = docs.find((d) => d.kind === 'DaemonSet')!.spec!.template!.spec!.containers!.find((c) => c.name === 'dnswarden')!;
    expect(container.readinessProbe?.httpGet?.path).toBe('/readyz');
    expect(container.livenessProbe?.httpGet?.path).toBe('/healthz');
  });

  it('the container HEALTHCHECK (Docker restarts unhealthy containers) checks liveness, /healthz', () => {
    expect(readFileSync(join(ROOT, 'deploy/container/Dockerfile'), 'utf8')).toMatch(/^HEALTHCHECK .*healthcheck\.mjs"\]$/m);
    expect(readFileSync(join(ROOT, 'deploy/container/healthcheck.mjs'), 'utf8')).toContain("?? 'http://127.0.0.1:9153/healthz'");
  });
});
