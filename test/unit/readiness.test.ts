// The readiness check list behind GET /readyz (src/ops/admin-http.ts): every failing check is named with its
// reason, a check that throws is a failing check (never a 500), and no check means ready.
import { describe, expect, it } from 'vitest';
import { readiness } from '../../src/ops/admin-http.js';

describe('readiness(checks)', () => {
  it('is 200 ready when every check passes (and with no checks)', () => {
    expect(readiness([])).toEqual({ status: 200, json: { status: 'ready' } });
    expect(readiness([{ name: 'a', check: () => null }, { name: 'b', check: () => null }])).toEqual({ status: 200, json: { status: 'ready' } });
  });

  it('is 503 naming every failing check in order, with its reason', () => {
    const r = readiness([
      { name: 'store', check: () => 'disk full' },
      { name: 'listeners', check: () => null },
      { name: 'unsaved_quarantines', check: () => '3 quarantine writes waiting' },
    ]);
    expect(r).toEqual({ status: 503, json: { status: 'not_ready', failing: [{ check: 'store', reason: 'disk full' }, { check: 'unsaved_quarantines', reason: '3 quarantine writes waiting' }] } });
  });

  it('turns a check that throws into a failing check', () => {
    const r = readiness([{ name: 'broken', check: () => { throw new Error('boom'); } }]);
    expect(r).toEqual({ status: 503, json: { status: 'not_ready', failing: [{ check: 'broken', reason: 'check failed: boom' }] } });
  });
});
