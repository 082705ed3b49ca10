// The admin token: the one the config names, else the one stored under the data dir, else a new one,
// announced once (never logged). Its own module so the supervisor (server.workers > 1) can make it
// before any worker starts without loading the whole server.
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Config } from './config.js';

/** The admin token: from config, else the one stored under the data dir, else a new one (announced once). */
export function adminTokenFor(config: Config, dir: string, announce: (line: string) => void): string {
  if (config.admin.token !== undefined) return config.admin.token;
  const file = join(dir, 'admin-token');
  if (existsSync(file)) return readFileSync(file, 'utf8').trim();
  const token = randomBytes(24).toString('base64url');
  writeFileSync(file, `${token}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  announce(`dnswarden: generated an admin token, stored in ${file} (mode 600): ${token}`);
  return token;
}
