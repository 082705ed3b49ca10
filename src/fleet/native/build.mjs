// `npm ci` runs this (the package's install script): builds the reuseport addon that server.workers > 1
// needs. A machine without python3, make or a C compiler still installs, and runs with one worker; a
// config asking for more then fails at start, naming server.workers and this build.
import { spawnSync } from 'node:child_process';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = dirname(fileURLToPath(import.meta.url));
const r = spawnSync('node-gyp', ['rebuild', '-C', dir, '--silent'], { stdio: 'inherit', shell: false });
if (r.status !== 0) {
  process.stderr.write(`dnswarden: the native reuseport addon did not build (${r.error?.message ?? `node-gyp exit ${r.status}`}); `
    + 'dnswarden runs, but only with server.workers: 1. Install python3, make and a C compiler, then `npm run build:native`.\n');
}
