// What a Config refers to outside itself: signing keys (inline or *_file) and API tokens (inline or
// token_file), read and checked as serve needs them. The one function for serve (start and SIGHUP) and
// `check-config`, so check-config calls valid exactly what serve accepts. Reads only the files the
// config names; never writes, never opens the store or a socket; never puts a token in a message.
import { createSecretKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ApiToken } from '../ops/admin-http.js';
import type { Config, SigningKeyConfig } from '../ops/config.js';
import { ConfigError, messageOf } from '../errors.js';

// jose is loaded when a registration key is first read: a resolver without dynamic sessions never needs it.
const jose = (): Promise<typeof import('jose')> => import('jose');

export interface VerifyKey {
  readonly alg: 'HS256' | 'EdDSA';
  readonly key: KeyObject | CryptoKey;
}

/** Loads signing keys once at start (files read, PEM parsed): bad keys fail the start, naming the field. */
export async function loadSigningKeys(keys: readonly SigningKeyConfig[]): Promise<ReadonlyMap<string, VerifyKey>> {
  const out = new Map<string, VerifyKey>();
  for (const [i, k] of keys.entries()) {
    const path = `sessions.signing_keys[${i}]`;
    if (out.has(k.kid)) throw new ConfigError(`${path}.kid`, `duplicate key id "${k.kid}"`);
    const read = (file: string, field: string): string => {
      try {
        return readFileSync(file, 'utf8').trim();
      } catch (err) {
        throw new ConfigError(`${path}.${field}`, `cannot read ${file}: ${messageOf(err)}`);
      }
    };
    if (k.alg === 'HS256') {
      const secret = k.secret ?? read(k.secret_file!, 'secret_file');
      if (secret.length < 32) throw new ConfigError(`${path}.secret`, 'HS256 secrets must be at least 32 characters');
      out.set(k.kid, { alg: 'HS256', key: createSecretKey(Buffer.from(secret, 'utf8')) });
    } else {
      const pem = k.public_key ?? read(k.public_key_file!, 'public_key_file');
      try {
        out.set(k.kid, { alg: 'EdDSA', key: await (await jose()).importSPKI(pem, 'EdDSA') });
      } catch (err) {
        throw new ConfigError(`${path}.public_key`, `not an Ed25519 public key in PEM (SPKI): ${messageOf(err)}`);
      }
    }
  }
  return out;
}


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
