// Container health check (liveness): GET /healthz on the admin API (open, no token). Exit 0 when it answers 200.
// DNSWARDEN_HEALTH_URL overrides the default http://127.0.0.1:9153/healthz (point it at /readyz to gate on
// readiness instead, e.g. for a `depends_on: condition: service_healthy` that must wait for working upstreams).
const url = process.env.DNSWARDEN_HEALTH_URL ?? 'http://127.0.0.1:9153/healthz';
try {
  const res = await fetch(url, { signal: AbortSignal.timeout(2500) });
  if (!res.ok) {
    console.error(`${url}: HTTP ${res.status}`);
    process.exitCode = 1;
  }
} catch (err) {
  console.error(`${url}: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
}
