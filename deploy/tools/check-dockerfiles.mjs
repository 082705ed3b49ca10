#!/usr/bin/env node
// Static checks of the Dockerfiles in deploy/container (no Docker engine needed):
//  - every COPY/ADD source from the build context exists in the repository and is not excluded by the
//    Dockerfile's own <name>.dockerignore (BuildKit reads it in preference to the context's .dockerignore);
//  - every COPY --from names an earlier stage;
//  - the final stage runs as a non-root numeric user (dnswarden image) and declares a HEALTHCHECK;
//  - base images are pinned to a tag (never implicit :latest), and the dnswarden image is built on Node 20.
// Usage: node deploy/tools/check-dockerfiles.mjs   (run from anywhere; paths are relative to the repository)
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const problems = [];

/** Instructions with line continuations joined and comments dropped. */
function instructions(text) {
  const out = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trimEnd();
    if (current === '' && /^\s*#/.test(line)) continue;
    if (line.endsWith('\\')) {
      current += `${line.slice(0, -1)} `;
      continue;
    }
    current += line;
    if (current.trim() !== '') out.push(current.trim());
    current = '';
  }
  return out;
}

/** .dockerignore patterns → a predicate "is this context path sent to the build?" (last match wins). */
function contextFilter(ignoreText) {
  const rules = ignoreText
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const include = l.startsWith('!');
      const pattern = (include ? l.slice(1) : l).replace(/^\/+/, '').replace(/\/+$/, '');
      const re = new RegExp(`^${pattern.split('**').map((part) => part.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('[^/]*')).join('.*')}(/.*)?$`);
      return { include, re };
    });
  return (path) => {
    let sent = true;
    for (const r of rules) if (r.re.test(path)) sent = r.include;
    return sent;
  };
}

function check(dockerfile, { finalUser, node20 }) {
  const rel = dockerfile;
  const path = join(root, dockerfile);
  if (!existsSync(path)) {
    problems.push(`${rel}: missing`);
    return;
  }
  const ignorePath = `${path}.dockerignore`;
  const sent = existsSync(ignorePath) ? contextFilter(readFileSync(ignorePath, 'utf8')) : () => true;
  const args = new Map();
  const stages = [];
  let user;
  let healthcheck = false;
  for (const ins of instructions(readFileSync(path, 'utf8'))) {
    const [word, ...rest] = ins.split(/\s+/);
    const op = word.toUpperCase();
    if (op === 'ARG' && stages.length === 0) {
      const [k, v] = rest.join(' ').split('=');
      args.set(k, v);
    } else if (op === 'FROM') {
      const image = rest[0].replace(/\$\{(\w+)\}/g, (_, k) => args.get(k) ?? '');
      const alias = rest[1]?.toUpperCase() === 'AS' ? rest[2] : undefined;
      if (!stages.includes(image.split(':')[0]) && !/:[\w.-]+$|@sha256:/.test(image)) problems.push(`${rel}: FROM ${image}: pin a tag or digest`);
      if (node20 && !stages.includes(image) && !/^node:20[.-]/.test(image)) problems.push(`${rel}: FROM ${image}: the image must be built on Node 20 (node:20-*)`);
      stages.push(alias ?? image);
      user = undefined;
      healthcheck = false;
    } else if (op === 'USER') {
      user = rest[0];
    } else if (op === 'HEALTHCHECK') {
      healthcheck = rest[0]?.toUpperCase() !== 'NONE';
    } else if (op === 'COPY' || op === 'ADD') {
      const flags = rest.filter((r) => r.startsWith('--'));
      const paths = rest.filter((r) => !r.startsWith('--'));
      const from = flags.find((f) => f.startsWith('--from='))?.slice('--from='.length);
      if (from !== undefined) {
        if (!stages.slice(0, -1).includes(from)) problems.push(`${rel}: ${op} --from=${from}: no earlier stage of that name`);
        continue;
      }
      for (const src of paths.slice(0, -1)) {
        if (!existsSync(join(root, src))) problems.push(`${rel}: ${op} ${src}: not in the repository`);
        else if (!sent(src.replace(/^\.\//, '').replace(/\/$/, ''))) problems.push(`${rel}: ${op} ${src}: excluded by ${dockerfile}.dockerignore`);
      }
    }
  }
  if (finalUser) {
    if (user === undefined) problems.push(`${rel}: the final stage has no USER (it would run as root)`);
    else if (!/^[1-9]\d*(:[1-9]\d*)?$/.test(user)) problems.push(`${rel}: USER ${user}: use a numeric non-root uid[:gid] (Kubernetes runAsNonRoot can verify only numbers)`);
  }
  if (!healthcheck) problems.push(`${rel}: the final stage has no HEALTHCHECK`);
}

check('deploy/container/Dockerfile', { finalUser: true, node20: true });
check('deploy/container/confine.Dockerfile', { finalUser: false, node20: false });

if (problems.length > 0) {
  for (const p of problems) console.error(p);
  process.exit(1);
}
console.log('check-dockerfiles: deploy/container/Dockerfile, deploy/container/confine.Dockerfile ok');
