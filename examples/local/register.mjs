#!/usr/bin/env node
// What an agent runtime does to register a session with dnswarden, for the local example (README.md,
// "Registering a session locally"): sign a registration JWT with the example HS256 key and POST it to
// /v1/sessions with the example runtime token. Prints the registered session as JSON.
// usage: node examples/local/register.mjs SID ADDRESS [interactive|batch|scheduled] [ADMIN_URL]
//   e.g. node examples/local/register.mjs agent-1 127.0.0.2 batch
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT } from 'jose';

const [sid, address, type = 'interactive', adminUrl = 'http://127.0.0.1:9153'] = process.argv.slice(2);
if (sid === undefined || address === undefined) {
  console.error('usage: node examples/local/register.mjs SID ADDRESS [interactive|batch|scheduled] [ADMIN_URL]');
  process.exit(64);
}
const here = import.meta.dirname;
const key = readFileSync(join(here, 'registration-hs256.key'), 'utf8').trim();
const runtimeToken = readFileSync(join(here, 'runtime-token'), 'utf8').trim();

const jwt = await new SignJWT({ sid, user: process.env.USER ?? 'newcomer', role: 'example-agent', session_type: type, addresses: [address.includes('/') ? address : `${address}/${address.includes(':') ? 128 : 32}`] })
  .setProtectedHeader({ alg: 'HS256', kid: 'example-runtime-1' })
  .setExpirationTime('1h')
  .sign(new TextEncoder().encode(key));

let res;
try {
  res = await fetch(`${adminUrl}/v1/sessions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${runtimeToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ token: jwt }),
    signal: AbortSignal.timeout(10_000),
  });
} catch (err) {
  console.error(`register: cannot reach dnswarden's admin API at ${adminUrl} (is it running?): ${err.cause?.message ?? err.message}`);
  process.exit(1);
}
const text = await res.text();
if (res.status !== 201) {
  console.error(`register: ${res.status}: ${text}`);
  process.exit(1);
}
console.log(JSON.stringify(JSON.parse(text), null, 2));
