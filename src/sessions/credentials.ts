// What a Config refers to outside itself: signing keys (inline or *_file) and API tokens (inline or
// token_file), read and checked as serve needs them. The one function for serve (start and SIGHUP) and
// `check-config`, so check-config calls valid exactly what serve accepts. Reads only the files the
// config names; never writes, never opens the store or a socket; never puts a token in a message.
import { readFileSync } from 'node:fs';
import type { ApiToken } from '../ops/admin-http.js';
import type { Config } from '../ops/config.js';
import { ConfigError, messageOf } from '../errors.js';
import { loadSigningKeys, type VerifyKey } from './directory.js';

export interface ConfigReferences {
  readonly keys: ReadonlyMap<string, VerifyKey>;
  /** Every API token; the admin one first when it is known (config or stored). */
  readonly tokens: readonly ApiToken[];
}

/**
 * Loads the signing keys and API tokens; `adminToken` is the token of the built-in "admin" caller
 * (admin.token, or the one stored under storage.dir; check-config passes only admin.token).
 */
export async function loadConfigReferences(config: Config, adminToken: string | undefined): Promise<ConfigReferences> {
  const keys = await loadSigningKeys(config.sessions.signing_keys);
  return { keys, tokens: apiTokens(config, adminToken) };
}

function apiTokens(config: Config, adminToken: string | undefined): ApiToken[] {
  const tokens: ApiToken[] = adminToken === undefined ? [] : [{ name: 'admin', kind: 'admin', token: adminToken }];
  const where = new Map<string, string>(adminToken === undefined ? [] : [[adminToken, 'admin.token (kind admin)']]);
  for (const [i, t] of config.admin.tokens.entries()) {
    let token = t.token;
    if (token === undefined) {
      try {
        token = readFileSync(t.token_file!, 'utf8').trim();
      } catch (err) {
        throw new ConfigError(`admin.tokens[${i}].token_file`, `cannot read ${t.token_file}: ${messageOf(err)}`);
      }
    }
    const field = `admin.tokens[${i}].${t.token === undefined ? 'token_file' : 'token'}`;
    if (token.length < 16) throw new ConfigError(field, 'API tokens must be at least 16 characters');
    // One secret under two names would authenticate as whichever comes first: never what was meant.
    const other = where.get(token);
    if (other !== undefined) throw new ConfigError(field, `the same token as ${other}: every API token must be unique`);
    where.set(token, `admin.tokens[${i}] (kind ${t.kind})`);
    tokens.push({ name: t.name, kind: t.kind, token });
  }
  return tokens;
}
