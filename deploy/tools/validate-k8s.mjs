#!/usr/bin/env node
// Validates Kubernetes manifests offline against the Kubernetes API schemas, strictly:
//  1. schema: each object through kubernetes-models' validators (generated from the Kubernetes OpenAPI spec:
//     types, required fields, enums, formats such as int32 and CIDR);
//  2. unknown fields: those validators let unknown keys through, so each object is also type-checked by the
//     TypeScript compiler as `<object literal> satisfies I<Kind>` — excess-property checking rejects every field
//     the API does not have, at any depth (what `kubeconform -strict` does);
//  3. consistency the API server checks or that a schema cannot see: metadata.name, namespaces on namespaced
//     kinds, workload selectors matching their pod labels, Services selecting a workload and naming its ports,
//     volumes naming ConfigMaps/Secrets that exist in the manifests;
//  4. NetworkPolicy semantics: agents' egress reaches dnswarden's pods only on its DNS port (never the admin API),
//     and dnswarden's ingress opens the admin port only to namespaces named by kubernetes.io/metadata.name.
// Usage: node deploy/tools/validate-k8s.mjs FILE_OR_DIR...   (directories are read recursively: *.yaml, *.yml)
// Exit 0 when every object passes, 1 with one line per problem otherwise, 2 on usage errors.
// Needs only the project's node_modules (kubernetes-models, yaml, typescript): no network.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(join(root, 'package.json'));

// apiVersion/kind → kubernetes-models module (and its I<Kind> interface). Only kinds this project ships.
const KINDS = {
  'v1/Namespace': { module: 'kubernetes-models/v1/Namespace', namespaced: false },
  'v1/ServiceAccount': { module: 'kubernetes-models/v1/ServiceAccount', namespaced: true },
  'v1/ConfigMap': { module: 'kubernetes-models/v1/ConfigMap', namespaced: true },
  'v1/Secret': { module: 'kubernetes-models/v1/Secret', namespaced: true },
  'v1/Service': { module: 'kubernetes-models/v1/Service', namespaced: true },
  'v1/Pod': { module: 'kubernetes-models/v1/Pod', namespaced: true },
  'apps/v1/DaemonSet': { module: 'kubernetes-models/apps/v1/DaemonSet', namespaced: true },
  'apps/v1/Deployment': { module: 'kubernetes-models/apps/v1/Deployment', namespaced: true },
  'apps/v1/StatefulSet': { module: 'kubernetes-models/apps/v1/StatefulSet', namespaced: true },
  'networking.k8s.io/v1/NetworkPolicy': { module: 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy', namespaced: true },
  'rbac.authorization.k8s.io/v1/Role': { module: 'kubernetes-models/rbac.authorization.k8s.io/v1/Role', namespaced: true },
  'rbac.authorization.k8s.io/v1/RoleBinding': { module: 'kubernetes-models/rbac.authorization.k8s.io/v1/RoleBinding', namespaced: true },
};

function yamlFiles(path) {
  const st = statSync(path);
  if (st.isFile()) return [path];
  return readdirSync(path)
    .sort()
    .flatMap((name) => {
      const p = join(path, name);
      if (statSync(p).isDirectory()) return yamlFiles(p);
      return /\.ya?ml$/.test(name) ? [p] : [];
    });
}

const args = process.argv.slice(2);
if (args.length === 0) {
  console.error('usage: validate-k8s.mjs FILE_OR_DIR...');
  process.exit(2);
}

const problems = [];
const objects = []; // { file, index, obj, where }
for (const file of args.flatMap((a) => yamlFiles(resolve(a)))) {
  const rel = relative(process.cwd(), file);
  const docs = parseAllDocuments(readFileSync(file, 'utf8'));
  const list = Array.isArray(docs) ? docs : [docs];
  list.forEach((doc, index) => {
    if (doc.errors.length > 0) {
      problems.push(`${rel} [doc ${index}]: YAML: ${doc.errors[0].message}`);
      return;
    }
    const obj = doc.toJS();
    if (obj === null || obj === undefined) return; // empty document (e.g. a trailing ---)
    const where = `${rel} [doc ${index}] ${obj.kind ?? '?'}/${obj.metadata?.name ?? '?'}`;
    objects.push({ file: rel, index, obj, where });
  });
}
if (objects.length === 0) problems.push(`no Kubernetes objects found in ${args.join(' ')}`);

// --- 1. schema
for (const o of objects) {
  const key = `${o.obj.apiVersion}/${o.obj.kind}`;
  const kind = KINDS[key];
  if (kind === undefined) {
    problems.push(`${o.where}: apiVersion/kind ${key} is not one this validator knows (add it to KINDS)`);
    continue;
  }
  o.kind = kind;
  const Model = require(kind.module)[o.obj.kind];
  try {
    new Model(o.obj).validate();
  } catch (err) {
    for (const line of String(err.message).split(/,\s*(?=data\/)/)) problems.push(`${o.where}: schema: ${line}`);
  }
  if (typeof o.obj.metadata?.name !== 'string' || o.obj.metadata.name === '') problems.push(`${o.where}: metadata.name is required`);
  if (kind.namespaced && typeof o.obj.metadata?.namespace !== 'string') {
    problems.push(`${o.where}: metadata.namespace is missing (kubectl apply would put it in the current namespace)`);
  }
}

// --- 2. unknown fields, through the TypeScript compiler
{
  const known = objects.filter((o) => o.kind !== undefined);
  const cache = join(root, 'node_modules', '.cache');
  mkdirSync(cache, { recursive: true });
  const dir = mkdtempSync(join(cache, 'validate-k8s-'));
  try {
    const lines = [];
    const ranges = []; // [firstLine, lastLine, object]
    known.forEach((o, i) => {
      lines.push(`import type { I${o.obj.kind} as T${i} } from '${o.kind.module}';`);
    });
    known.forEach((o, i) => {
      const body = JSON.stringify(o.obj, null, 2).split('\n');
      const first = lines.length + 1;
      lines.push(`export const o${i} = ${body[0]}`, ...body.slice(1, -1), `${body.at(-1)} satisfies T${i};`);
      ranges.push([first, lines.length, o]);
    });
    writeFileSync(join(dir, 'manifests.ts'), `${lines.join('\n')}\n`);
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { strict: true, noEmit: true, module: 'commonjs', moduleResolution: 'node10', target: 'ES2022', skipLibCheck: true, types: [], ignoreDeprecations: '5.0' },
        files: ['manifests.ts'],
      }),
    );
    const tsc = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', join(dir, 'tsconfig.json'), '--pretty', 'false'], { encoding: 'utf8' });
    if (tsc.status !== 0) {
      const out = `${tsc.stdout}${tsc.stderr}`;
      let matched = 0;
      for (const m of out.matchAll(/manifests\.ts\((\d+),\d+\): error (TS\d+): ([^\n]*)/g)) {
        const line = Number(m[1]);
        const range = ranges.find(([a, b]) => line >= a && line <= b);
        problems.push(`${range ? range[2].where : `manifests.ts:${line}`}: unknown or mistyped field: ${m[3]}`);
        matched++;
      }
      if (matched === 0) problems.push(`TypeScript check failed to run:\n${out}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// --- 3. consistency
const all = objects.map((o) => o.obj);
const named = (kind, ns, name) => all.some((x) => x.kind === kind && x.metadata?.name === name && x.metadata?.namespace === ns);
const WORKLOAD_KINDS = ['DaemonSet', 'Deployment', 'StatefulSet'];
const workloads = all.filter((x) => WORKLOAD_KINDS.includes(x.kind));
const subset = (small = {}, big = {}) => Object.entries(small).every(([k, v]) => big[k] === v);
for (const o of objects) {
  const x = o.obj;
  const ns = x.metadata?.namespace;
  if (WORKLOAD_KINDS.includes(x.kind)) {
    const labels = x.spec?.template?.metadata?.labels ?? {};
    if (!subset(x.spec?.selector?.matchLabels, labels)) problems.push(`${o.where}: spec.selector.matchLabels does not match spec.template.metadata.labels`);
    const pod = x.spec?.template?.spec ?? {};
    for (const v of pod.volumes ?? []) {
      if (v.configMap && !v.configMap.optional && !named('ConfigMap', ns, v.configMap.name)) problems.push(`${o.where}: volume ${v.name}: no ConfigMap ${ns}/${v.configMap.name} in the manifests`);
      if (v.secret && !v.secret.optional && !named('Secret', ns, v.secret.secretName)) problems.push(`${o.where}: volume ${v.name}: no Secret ${ns}/${v.secret.secretName} in the manifests`);
    }
    // A StatefulSet's volumeClaimTemplates are volumes of its pods too.
    const volumeNames = new Set([...(pod.volumes ?? []), ...(x.spec?.volumeClaimTemplates ?? []).map((t) => t.metadata ?? {})].map((v) => v.name));
    for (const c of [...(pod.initContainers ?? []), ...(pod.containers ?? [])]) {
      for (const m of c.volumeMounts ?? []) if (!volumeNames.has(m.name)) problems.push(`${o.where}: container ${c.name} mounts unknown volume ${m.name}`);
    }
    if (pod.serviceAccountName && !named('ServiceAccount', ns, pod.serviceAccountName)) problems.push(`${o.where}: no ServiceAccount ${ns}/${pod.serviceAccountName} in the manifests`);
  }
  if (x.kind === 'Service' && x.spec?.selector) {
    const targets = workloads.filter((w) => w.metadata?.namespace === ns && subset(x.spec.selector, w.spec?.template?.metadata?.labels));
    if (targets.length === 0) {
      problems.push(`${o.where}: spec.selector matches no workload's pod labels in namespace ${ns}`);
      continue;
    }
    for (const p of x.spec.ports ?? []) {
      if (typeof p.targetPort !== 'string') continue;
      for (const w of targets) {
        const ports = (w.spec.template.spec.containers ?? []).flatMap((c) => c.ports ?? []);
        const port = ports.find((cp) => cp.name === p.targetPort);
        if (port === undefined) problems.push(`${o.where}: port ${p.name}: targetPort "${p.targetPort}" is not a container port of ${w.kind}/${w.metadata.name}`);
        else if ((port.protocol ?? 'TCP') !== (p.protocol ?? 'TCP')) problems.push(`${o.where}: port ${p.name}: protocol ${p.protocol ?? 'TCP'} but ${p.targetPort} is ${port.protocol ?? 'TCP'}`);
      }
    }
  }
}

// --- 4. NetworkPolicy semantics: agents reach dnswarden only on its DNS port; its admin API only from named namespaces.
// dnswarden's namespace, pod labels and ports come from its workload in the manifests (defaults: this project's).
{
  const NAME_KEY = 'kubernetes.io/metadata.name';
  const workload = workloads.find((w) => w.spec?.template?.metadata?.labels?.['app.kubernetes.io/name'] === 'dnswarden');
  const dwNs = workload?.metadata?.namespace ?? 'dnswarden';
  const dwLabels = workload?.spec?.template?.metadata?.labels ?? { 'app.kubernetes.io/name': 'dnswarden' };
  const containerPorts = (workload?.spec?.template?.spec?.containers ?? []).flatMap((c) => c.ports ?? []);
  const portOf = (name, fallback) => containerPorts.find((p) => p.name === name)?.containerPort ?? fallback;
  const dnsPort = portOf('dns-udp', 5353);
  const adminPort = portOf('admin', 9153);
  const nsLabels = (name) => ({ ...(all.find((x) => x.kind === 'Namespace' && x.metadata?.name === name)?.metadata?.labels ?? {}), [NAME_KEY]: name });
  const matches = (selector = {}, labels = {}) =>
    subset(selector.matchLabels, labels) &&
    (selector.matchExpressions ?? []).every((e) => {
      const has = Object.hasOwn(labels, e.key);
      switch (e.operator) {
        case 'In': return has && e.values.includes(labels[e.key]);
        case 'NotIn': return !has || !e.values.includes(labels[e.key]);
        case 'Exists': return has;
        case 'DoesNotExist': return !has;
        default: return true; // unknown operator: assume it may match (the schema check reports it)
      }
    });
  // A port entry as [protocol, from, to]; a named port is resolved against dnswarden's container ports.
  const rangeOf = (p) => {
    const protocol = p.protocol ?? 'TCP';
    if (p.port === undefined) return [protocol, 1, 65535];
    const n = typeof p.port === 'string' ? containerPorts.find((c) => c.name === p.port)?.containerPort : p.port;
    if (n === undefined) return [protocol, 0, -1]; // a name dnswarden does not have: matches none of its ports
    return [protocol, n, p.endPort ?? n];
  };
  const covers = (ports, protocol, port) => ports === undefined || ports.length === 0 || ports.some((p) => {
    const [proto, from, to] = rangeOf(p);
    return proto === protocol && from <= port && port <= to;
  });
  const cidrCovers = (outer, inner) => {
    const [a, alen] = outer.split('/');
    const [b, blen] = inner.split('/');
    if (a.includes(':') !== b.includes(':') || Number(alen) > Number(blen)) return false;
    const bits = (ip) => ip.includes(':')
      ? ip.split('::').map((h) => (h === '' ? [] : h.split(':'))).reduce((l, r) => [...l, ...Array(8 - l.length - r.length).fill('0'), ...r]).map((g) => parseInt(g, 16).toString(2).padStart(16, '0')).join('')
      : ip.split('.').map((o) => Number(o).toString(2).padStart(8, '0')).join('');
    return bits(a).slice(0, Number(alen)) === bits(b).slice(0, Number(alen));
  };
  const policies = objects.filter((o) => o.obj.kind === 'NetworkPolicy');
  const types = (np) => np.spec?.policyTypes ?? (np.spec?.egress ? ['Ingress', 'Egress'] : ['Ingress']);
  const agentNamespaces = new Set(policies.filter((o) => o.obj.metadata?.namespace !== dwNs && types(o.obj).includes('Egress')).map((o) => o.obj.metadata.namespace));

  for (const o of policies) {
    const np = o.obj;
    const ns = np.metadata?.namespace;
    if (ns === dwNs || !types(np).includes('Egress')) continue;
    const podCidrs = String(np.metadata?.annotations?.['dnswarden.io/cluster-pod-cidrs'] ?? '').split(',').map((c) => c.trim()).filter((c) => c !== '');
    (np.spec?.egress ?? []).forEach((rule, i) => {
      const peers = rule.to ?? [];
      const reaches = peers.length === 0 ? ['every destination'] : peers.flatMap((peer) => {
        if (peer.ipBlock) {
          const family = peer.ipBlock.cidr.includes(':');
          const mine = podCidrs.filter((c) => c.includes(':') === family && cidrCovers(peer.ipBlock.cidr, c));
          const uncut = mine.filter((c) => !(peer.ipBlock.except ?? []).some((e) => cidrCovers(e, c)));
          if (podCidrs.length === 0) return [`ipBlock ${peer.ipBlock.cidr} (name the cluster's pod CIDRs in the annotation dnswarden.io/cluster-pod-cidrs and cut them out with except)`];
          return uncut.length > 0 ? [`ipBlock ${peer.ipBlock.cidr}, which does not except the pod CIDR ${uncut.join(', ')}`] : [];
        }
        const nsMatch = peer.namespaceSelector === undefined ? ns === dwNs : matches(peer.namespaceSelector, nsLabels(dwNs));
        return nsMatch && matches(peer.podSelector, dwLabels) ? [peer.namespaceSelector === undefined ? 'a podSelector' : 'a namespaceSelector matching dnswarden\'s namespace'] : [];
      });
      if (reaches.length === 0) return;
      const others = (rule.ports ?? []).length === 0 ? ['every port'] : rule.ports.filter((p) => {
        const [proto, from, to] = rangeOf(p);
        return !((proto === 'UDP' || proto === 'TCP') && from === dnsPort && to === dnsPort);
      }).map((p) => { const [proto, from, to] = rangeOf(p); return `${proto} ${from === to ? from : `${from}-${to}`}`; });
      if (others.length === 0) return;
      const admin = covers(rule.ports, 'TCP', adminPort) ? `, the admin API (TCP ${adminPort}) included` : '';
      problems.push(`${o.where}: egress[${i}] lets agents reach dnswarden's pods on ports other than its DNS port ${dnsPort}${admin}: ${others.join(', ')} (through ${reaches.join('; ')})`);
    });
  }

  const guards = policies.filter((o) => o.obj.metadata?.namespace === dwNs && types(o.obj).includes('Ingress') && matches(o.obj.spec?.podSelector, dwLabels));
  if (workload !== undefined && guards.length === 0) {
    problems.push(`${dwNs}: no NetworkPolicy limits ingress to dnswarden's pods: its admin API (TCP ${adminPort}) is open to every pod, agents included`);
  }
  for (const o of guards) {
    (o.obj.spec?.ingress ?? []).forEach((rule, i) => {
      if (!covers(rule.ports, 'TCP', adminPort)) return;
      const peers = rule.from ?? [];
      const why = peers.length === 0 ? ['every source'] : peers.flatMap((peer) => {
        if (peer.ipBlock) return [`ipBlock ${peer.ipBlock.cidr}`];
        if (peer.namespaceSelector === undefined) return ['pods of its own namespace (a podSelector)'];
        const sel = peer.namespaceSelector;
        const named = [sel.matchLabels?.[NAME_KEY], ...(sel.matchExpressions ?? []).filter((e) => e.key === NAME_KEY && e.operator === 'In').flatMap((e) => e.values)].filter((n) => n !== undefined);
        if (named.length === 0) return ['namespaces not named by kubernetes.io/metadata.name'];
        const agents = named.filter((n) => agentNamespaces.has(n));
        return agents.length > 0 ? [`the agents' namespace ${agents.join(', ')}`] : [];
      });
      if (why.length > 0) problems.push(`${o.where}: ingress[${i}] opens the admin port (TCP ${adminPort}) to ${why.join('; ')}: it must come only from named namespaces (runtime, Prometheus, analysts)`);
    });
  }
}

if (problems.length > 0) {
  for (const p of problems) console.error(p);
  console.error(`validate-k8s: ${problems.length} problem(s) in ${objects.length} object(s)`);
  process.exit(1);
}
console.log(`validate-k8s: ${objects.length} object(s) valid (Kubernetes API schemas via kubernetes-models, strict fields via tsc)`);
