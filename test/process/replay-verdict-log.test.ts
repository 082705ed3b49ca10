// Issue 4, tuning: `dnswarden replay` reads dnswarden's own verdict log lines and re-scores them under a
// candidate config, printing what would change against the logged verdicts and a threshold sweep.
import { execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '../..');
const CLI = join(ROOT, 'dist/src/cli.js');
const LOG = join(ROOT, 'fixtures/replay/verdict-log.jsonl');

const replay = (...args: string[]): string => execFileSync(process.execPath, [CLI, 'replay', LOG, ...args], { encoding: 'utf8', timeout: 20_000 });

describe('replay of a verdict log', () => {
  it('under the running defaults, nothing changes against the logged verdicts', () => {
    const out = replay();
    expect(out).toContain('against the logged verdicts (3 lines): newly blocked 0, newly allowed 0');
    expect(out).toMatch(/quarantine\/threshold\s+1/);
    expect(out).toMatch(/nxdomain\/deny_list\s+1/);
  });

  it('under a lenient candidate, the batch session\'s two blocks become answers, and the sweep shows the trade-off', () => {
    const out = replay('--config', join(ROOT, 'fixtures/replay/candidate-lenient.yaml'));
    expect(out).toContain('against the logged verdicts (3 lines): newly blocked 0, newly allowed 2');
    expect(out).toMatch(/batch\s+newly blocked 0, newly allowed 2/);
    // Sweep rows: at 0.5 the exfil session is blocked and quarantined; at 1.2 only the deny-listed name is blocked.
    expect(out).toMatch(/^\s+0\.50\s+3\s+1$/m);
    expect(out).toMatch(/^\s+1\.20\s+1\s+0$/m);
  });

  it('--json gives the same figures to a script', () => {
    const report = JSON.parse(replay('--json', '--config', join(ROOT, 'fixtures/replay/candidate-lenient.yaml'))) as { changes: { newlyAllowed: number }; sweep: { blockAt: number; blockedQueries: number }[] };
    expect(report.changes.newlyAllowed).toBe(2);
    expect(report.sweep.find((r) => r.blockAt === 0.5)?.blockedQueries).toBe(3);
  });
});
