// House rules that must hold without a linter: the README tells the truth about every config field
// and metric, every yaml block in it validates, scoring stays pure, and only wire.ts touches
// dns-packet, and every bench script parses (nothing in CI runs the bench).
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseConfig, parseConfigText } from '../src/ops/config.js';
import { createMetrics } from '../src/ops/telemetry.js';

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
  forward_zones: [{ name: 'ad.example.com', upstreams: [{ address: '10.0.0.53:53' }] }],
  sessions: { signing_keys: [{ kid: 'k', alg: 'HS256', secret: 'z'.repeat(32) }] },
  alerts: { webhooks: [{ url: 'http://127.0.0.1:9/hook' }] },
  zones: [{ name: 'corp.example', file: 'corp.example.zone' }],
  policy: { rpz: [{ name: 'threat.rpz', file: 'threat.rpz' }] },
  fleet: { redis: { url: 'redis://127.0.0.1:6379/0', password_file: '/run/secrets/redis' } },
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
    const names = (await metrics.registry.getMetricsAsJSON()).map((m) => m.name).filter((n) => !n.startsWith('dnswarden_process_') && !n.startsWith('dnswarden_nodejs_'));
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

  it('nothing in src/ imports dns-packet (a test-only reference codec)', () => {
    const importers = [...sourceFiles('src'), ...sourceFiles('scoring')].filter((f) => /from 'dns-packet'/.test(readFileSync(f, 'utf8')));
    expect(importers).toEqual([]); // wire.ts encodes byte by byte; dns-packet is the tests' independent reference
  });

  it('only src/cli.ts exits the process', () => {
    const exiting = sourceFiles('src').filter((f) => /process\.exit\(/.test(readFileSync(f, 'utf8')));
    expect(exiting).toEqual(['src/cli.ts']);
  });
});

// ---------------------------------------------------------------------------------------------
// The architecture (ARCHITECTURE.md): folders, which folder may import which, no import cycle.

/** A module's place: its folder under src/ (`src/dns`), `scoring`, or the file itself for src/'s top level. */
function placeOf(file: string): string {
  const parts = file.split('/');
  if (parts[0] === 'scoring') return 'scoring';
  if (parts[0] === 'console') return 'console';
  return parts.length > 2 ? `${parts[0]}/${parts[1]}` : file;
}

/** Every relative import of a TS file (values, types, re-exports and dynamic imports alike), resolved to a path. */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:\bfrom|\bimport)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) {
    out.push(join(file, '..', m[1]!).replace(/\.js$/, '.ts'));
  }
  return out;
}

/**
 * Which places each place may import (beyond itself). Lower layers never import higher ones:
 * errors, scoring → ops → dns, zones, domain-age, sessions → policy, store → analyst → fleet → outcome → pipeline → replay, app → cli.
 * Config schemas live beside what they configure and are leaves, so ops/config may read them.
 */
const SCHEMAS = ['src/policy/schema.ts', 'src/domain-age/schema.ts', 'src/analyst/alerts-schema.ts'];
const MAY_IMPORT: Readonly<Record<string, readonly string[]>> = {
  'scoring': [],
  'src/errors.ts': [],
  'src/ops': ['src/errors.ts', 'scoring', ...SCHEMAS],
  'src/dns': ['src/errors.ts', 'src/ops'],
  'src/zones': ['src/errors.ts', 'src/ops'],
  'src/domain-age': ['src/errors.ts', 'src/ops'],
  'src/sessions': ['src/errors.ts', 'src/ops', 'scoring'],
  'src/policy': ['src/errors.ts', 'src/ops', 'scoring', 'src/zones', 'src/sessions', 'src/dns'],
  'src/store.ts': ['src/errors.ts', 'src/ops', 'src/sessions'],
  'src/analyst': ['src/errors.ts', 'src/ops', 'scoring', 'src/dns', 'src/zones', 'src/sessions', 'src/policy', 'src/store.ts'],
  'src/fleet': ['src/errors.ts', 'src/ops', 'src/dns', 'src/sessions', 'src/analyst', 'src/store.ts'],
  // What the query path produces and records (Outcome, its reply bytes, the verdict log): above the verdicts it
  // carries, below the pipeline that makes them; dns may not import it (dns never knows verdicts).
  'src/outcome': ['src/errors.ts', 'src/ops', 'src/dns', 'src/zones', 'src/sessions', 'src/policy'],
  'src/pipeline.ts': ['src/errors.ts', 'src/ops', 'scoring', 'src/dns', 'src/zones', 'src/domain-age', 'src/sessions', 'src/policy', 'src/analyst', 'src/store.ts', 'src/outcome'],
  // `dnswarden replay`: the pipeline itself, on in-memory stand-ins, deciding logged queries offline (above the
  // pipeline it drives; only the CLI imports it).
  'src/replay': ['src/errors.ts', 'src/ops', 'scoring', 'src/dns', 'src/zones', 'src/sessions', 'src/policy', 'src/analyst', 'src/outcome', 'src/pipeline.ts'],
  'src/app.ts': ['src/errors.ts', 'src/ops', 'scoring', 'src/dns', 'src/zones', 'src/domain-age', 'src/sessions', 'src/policy', 'src/analyst', 'src/fleet', 'src/store.ts', 'src/outcome', 'src/pipeline.ts'],
  'src/cli.ts': ['src/errors.ts', 'src/ops', 'scoring', 'src/zones', 'src/sessions', 'src/policy', 'src/analyst', 'src/fleet', 'src/store.ts', 'src/app.ts', 'src/replay'],
  // The analyst console (browser code, built by esbuild): a client of the API, it imports nothing of the product.
  'console': [],
};

describe('architecture', () => {
  const files = [...sourceFiles('src'), ...sourceFiles('scoring'), ...sourceFiles('console')].filter((f) => !f.includes('/native/'));

  it('src/ top level holds only the composition root, pipeline, CLI, errors and the store (≤ 8 files)', () => {
    const top = readdirSync('src').filter((f) => f.endsWith('.ts'));
    expect(top.sort()).toEqual(['app.ts', 'cli.ts', 'errors.ts', 'pipeline.ts', 'store.ts']);
  });

  it('every place is in the layer table, and imports only what its layer allows (type-only imports too)', () => {
    const broken: string[] = [];
    for (const file of files) {
      const from = placeOf(file);
      const allowed = MAY_IMPORT[from];
      if (allowed === undefined) {
        broken.push(`${from}: not in the layer table (add it here and in ARCHITECTURE.md)`);
        continue;
      }
      for (const target of importsOf(file)) {
        const to = placeOf(target);
        if (to === from || allowed.includes(to) || allowed.includes(target)) continue;
        broken.push(`${file} imports ${target}`);
      }
    }
    expect(broken).toEqual([]);
  });

  it('has no import cycle between modules (type-only imports included)', () => {
    const graph = new Map(files.map((f) => [f, importsOf(f).filter((t) => files.includes(t))]));
    const cycles: string[] = [];
    const state = new Map<string, 'open' | 'done'>();
    const visit = (f: string, path: string[]): void => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'open') {
        cycles.push([...path.slice(path.indexOf(f)), f].join(' → '));
        return;
      }
      state.set(f, 'open');
      for (const t of graph.get(f) ?? []) visit(t, [...path, f]);
      state.set(f, 'done');
    };
    for (const f of files) visit(f, []);
    expect(cycles).toEqual([]);
  });

  it('each folder under src/ (and console/) has a README saying what it owns and never does', () => {
    const folders = [...readdirSync('src', { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => join('src', d.name)), 'console'];
    for (const dir of folders) {
      const readme = readFileSync(join(dir, 'README.md'), 'utf8');
      expect(readme, dir).toMatch(/Owns/);
      expect(readme, dir).toMatch(/Never/);
    }
  });

  it('ARCHITECTURE.md names every module, and every module it names exists', () => {
    const doc = readFileSync('ARCHITECTURE.md', 'utf8');
    const named = new Set([...doc.matchAll(/`((?:src|scoring|console)\/[\w/.-]+\.ts)`/g)].map((m) => m[1]!));
    const real = new Set(files);
    expect([...real].filter((f) => !named.has(f))).toEqual([]);
    expect([...named].filter((f) => !real.has(f))).toEqual([]);
  });

  it('no module over 450 lines without a reason at its top', () => {
    const long = files.filter((f) => readFileSync(f, 'utf8').split('\n').length > 450 && !/^\/\/ .*Why (this|it) is long/m.test(readFileSync(f, 'utf8').slice(0, 2000)));
    expect(long).toEqual([]);
  });
});

describe('bench', () => {
  // Nothing in CI runs the bench (13 minutes, and it needs the whole machine): a script that no longer parses
  // would otherwise be found by the next person who runs it.
  it('every bench/*.mjs parses (node --check)', () => {
    const scripts = readdirSync('bench').filter((f) => f.endsWith('.mjs')).map((f) => join('bench', f));
    expect(scripts.length).toBeGreaterThanOrEqual(10);
    const broken = scripts
      .map((f) => ({ f, r: spawnSync(process.execPath, ['--check', f], { encoding: 'utf8', timeout: 60_000 }) }))
      .filter(({ r }) => r.status !== 0)
      .map(({ f, r }) => `${f}: ${(r.stderr || String(r.error ?? r.signal)).trim().split('\n').slice(0, 5).join(' | ')}`);
    expect(broken).toEqual([]);
  }, 120_000);

  it("every name a bench script imports from the build is exported by that module's source", () => {
    // node --check does not resolve imports: a module that moves an export (loadSigningKeys went to credentials.ts)
    // breaks `npm run bench` at its first line without this.
    const missing: string[] = [];
    for (const f of readdirSync('bench').filter((n) => n.endsWith('.mjs'))) {
      const text = readFileSync(join('bench', f), 'utf8');
      for (const m of text.matchAll(/import\s*\{([^}]*)\}\s*from\s*'\.\.\/dist\/(src\/[\w/.-]+)\.js'/g)) {
        const source = readFileSync(`${m[2]}.ts`, 'utf8');
        for (const name of m[1]!.split(',').map((n) => n.trim().replace(/^type\s+/, '').split(/\s+as\s+/)[0]!).filter(Boolean)) {
          const exported = new RegExp(`export\\s+(?:async\\s+)?(?:function|class|const|let|interface|type|enum)\\s+${name}\\b|export\\s*\\{[^}]*\\b${name}\\b`).test(source);
          if (!exported) missing.push(`bench/${f}: ${name} from ${m[2]}.ts`);
        }
      }
    }
    expect(missing).toEqual([]);
  });
});
