// House rules that must hold without a linter: the README tells the truth about every config field
// and metric, every yaml block in it validates, scoring stays pure, and only wire.ts touches
// dns-packet.
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig, parseConfigText } from '../src/config.js';
import { createMetrics } from '../src/telemetry.js';

const README = readFileSync('README.md', 'utf8');
const SESSION_TYPES = new Set(['interactive', 'batch', 'scheduled']);
// Map-valued fields are documented as one field (their keys are the user's TLDs or header names).
const RECORD_FIELDS = new Set(['domain_age.rdap.servers', 'domain_age.whois.servers', 'alerts.webhooks[].headers']);

/** Leaf paths of a config object, written as the README writes them: `a.b[].c`, `policy.session_types.<type>.x`. */
function leafPaths(value: unknown, prefix: string, out: Set<string>): void {
  if (RECORD_FIELDS.has(prefix)) {
    out.add(prefix);
    return;
  }
  if (Array.isArray(value)) {
    if (value.length === 0 || typeof value[0] !== 'object') {
      out.add(prefix);
      return;
    }
    out.add(prefix);
    for (const item of value) leafPaths(item, `${prefix}[]`, out);
    return;
  }
  if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      const key = prefix.endsWith('session_types') && SESSION_TYPES.has(k) ? '<type>' : k;
      leafPaths(v, prefix === '' ? key : `${prefix}.${key}`, out);
    }
    return;
  }
  out.add(prefix);
}

/** A config that sets every optional and list-valued section, so their element fields are walked too. */
const EVERYTHING = {
  admin: { token: 'x'.repeat(32), tokens: [{ name: 'alice', kind: 'analyst', token: 'y'.repeat(32) }] },
  upstreams: [{ address: '127.0.0.1:53' }],
  sessions: { signing_keys: [{ kid: 'k', alg: 'HS256', secret: 'z'.repeat(32) }] },
  alerts: { webhooks: [{ url: 'http://127.0.0.1:9/hook' }] },
};

describe('README', () => {
  const paths = new Set<string>();
  leafPaths(parseConfig({}), '', paths);
  leafPaths(parseConfig(EVERYTHING), '', paths);

  it('walks a realistic number of config fields (the check itself works)', () => {
    expect(paths.size).toBeGreaterThan(80);
    expect(paths).toContain('policy.session_types.<type>.block_at');
    expect(paths).toContain('upstreams[].timeout_ms');
  });

  it('documents every config field', () => {
    const documented = (p: string): boolean => {
      if (README.includes(`\`${p}\``)) return true;
      // `secret` / `secret_file` style rows document two alternatives in one cell
      const last = p.split('.').at(-1)!;
      const parent = p.slice(0, p.length - last.length);
      return README.includes(`\`${parent}${last.replace(/_file$/, '')}\` / \`${last}\``) || README.includes(`\`${parent}${last}\` / `);
    };
    const missing = [...paths].filter((p) => !documented(p));
    expect(missing).toEqual([]);
  });

  it('documents every metric', async () => {
    const metrics = createMetrics();
    const names = (await metrics.registry.getMetricsAsJSON()).map((m) => m.name).filter((n) => !n.startsWith('dnswarden_process_') && !n.startsWith('nodejs_'));
    expect(names.length).toBeGreaterThan(20);
    expect(names.filter((n) => !README.includes(`\`${n}\``))).toEqual([]);
  });

  it('has only yaml blocks that validate', () => {
    const blocks = [...README.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!);
    expect(blocks.length).toBeGreaterThan(0);
    for (const block of blocks) expect(() => parseConfigText(block)).not.toThrow();
  });

  it('shows the true defaults in its complete example config', () => {
    const example = [...README.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1]!).find((b) => b.includes('session_types'));
    expect(example).toBeDefined();
    const fromReadme = parseConfigText(example!);
    const defaults = parseConfig({});
    // The example omits what it cannot show as a literal (the generated token, resolv.conf upstreams)
    // and the scoring section (its table lists every default); everything it shows must be the default.
    const shown = (cfg: Record<string, unknown>) => { const { scoring: _s, ...rest } = cfg; return rest; };
    expect(shown(fromReadme as unknown as Record<string, unknown>)).toEqual(shown(defaults as unknown as Record<string, unknown>));
  });

  it('starts with the two set-up commands', () => {
    const firstBlock = /```sh\n([\s\S]*?)```/.exec(README)![1]!.trim().split('\n');
    expect(firstBlock).toHaveLength(2);
    expect(firstBlock[0]).toMatch(/^npm ci && npm start/);
    expect(firstBlock[1]).toMatch(/\.ci\/run/);
  });
});

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => join(dir, f));
}

describe('import rules', () => {
  it('scoring/ is pure: no I/O modules, no clock, nothing from src/', () => {
    for (const file of sourceFiles('scoring')) {
      const text = readFileSync(file, 'utf8');
      expect(text, file).not.toMatch(/from '(node:)?(fs|net|dgram|http|https|child_process)'/);
      expect(text, file).not.toMatch(/from '\.\.\/src\//);
      expect(text, file).not.toMatch(/Date\.now\(|performance\.now\(|Math\.random\(/);
    }
  });

  it('only src/wire.ts imports dns-packet', () => {
    const importers = [...sourceFiles('src'), ...sourceFiles('scoring')].filter((f) => /from 'dns-packet'/.test(readFileSync(f, 'utf8')));
    expect(importers.filter((f) => f !== 'src/wire.ts')).toEqual([]); // wire.ts itself now encodes without it
  });

  it('only src/cli.ts exits the process', () => {
    const exiting = sourceFiles('src').filter((f) => /process\.exit\(/.test(readFileSync(f, 'utf8')));
    expect(exiting).toEqual(['src/cli.ts']);
  });
});
