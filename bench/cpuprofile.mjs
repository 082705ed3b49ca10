// Summarises a V8 .cpuprofile (from `node --cpu-prof`): self time per function and per file, top N.
// Usage alone: node bench/cpuprofile.mjs FILE.cpuprofile [N]
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export function summarizeProfile(path, top = 15) {
  const prof = JSON.parse(readFileSync(path, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  // Self samples per node from the samples array (hitCount is not always filled in).
  const counts = new Map();
  for (const id of prof.samples) counts.set(id, (counts.get(id) ?? 0) + 1);
  const total = prof.samples.length || 1;
  const fn = new Map();
  const file = new Map();
  let idle = 0;
  for (const [id, n] of counts) {
    const node = byId.get(id);
    const cf = node.callFrame;
    const name = cf.functionName || '(anonymous)';
    if (name === '(idle)') idle += n;
    const url = shortUrl(cf.url);
    const key = `${name} ${url}${url ? `:${cf.lineNumber + 1}` : ''}`;
    fn.set(key, (fn.get(key) ?? 0) + n);
    const fileKey = url || `(${name})`;
    file.set(fileKey, (file.get(fileKey) ?? 0) + n);
  }
  const busy = total - idle || 1;
  const rank = (m) =>
    [...m.entries()]
      .filter(([k]) => !k.startsWith('(idle)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, n]) => ({ where: k, pct_of_busy: Math.round((n / busy) * 1000) / 10 }));
  return { samples: total, idle_pct: Math.round((idle / total) * 1000) / 10, top_functions: rank(fn), top_files: rank(file) };
}

function shortUrl(url) {
  if (!url) return '';
  const u = url.replace(/^file:\/\//, '');
  const nm = u.lastIndexOf('node_modules/');
  if (nm >= 0) return u.slice(nm + 'node_modules/'.length);
  const d = u.indexOf('/dist/');
  if (d >= 0) return u.slice(d + 1);
  return u;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: node bench/cpuprofile.mjs FILE.cpuprofile [N]\n');
    process.exitCode = 64;
  } else {
    process.stdout.write(`${JSON.stringify(summarizeProfile(file, Number(process.argv[3] ?? 20)), null, 2)}\n`);
  }
}
