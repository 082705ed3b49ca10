import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.js';
import { parseConfigText } from '../../src/ops/config.js';

describe('fleet.token_check', () => {
  it('defaults to open, single node or fleet', () => {
    expect(parseConfigText('logging: { level: warn }\n').fleet.token_check).toBe('open');
    expect(parseConfigText('fleet: { redis: { url: "redis://127.0.0.1:6379/0" } }\n').fleet.token_check).toBe('open');
  });

  it('closed needs fleet.redis: without it the start fails naming the field', () => {
    expect(parseConfigText('fleet: { token_check: closed, redis: { url: "redis://127.0.0.1:6379/0" } }\n').fleet.token_check).toBe('closed');
    let error: unknown;
    try {
      parseConfigText('fleet: { token_check: closed }\n');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).path).toBe('fleet.token_check');
    expect((error as ConfigError).message).toMatch(/closed needs fleet\.redis/);
  });

  it('anything but open or closed fails naming the field', () => {
    expect(() => parseConfigText('fleet: { token_check: maybe, redis: { url: "redis://127.0.0.1:6379/0" } }\n')).toThrow(/fleet\.token_check/);
  });
});
