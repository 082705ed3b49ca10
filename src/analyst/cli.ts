// The analyst's CLI over the admin API: quarantine, sessions, deny and audit commands. Aligned tables
// for a terminal, --json for scripts; every failure (server down, bad token, unknown id) is one
// line and a distinct exit status (src/analyst/exit-codes.ts). Talks HTTP only; knows nothing of the server's internals.
import { existsSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { messageOf, WardenError } from '../errors.js';
import { qtypeText } from '../ops/qtypes.js';
import { evidenceOf } from '../store.js';
import { CliError, EXIT, usageError } from './exit-codes.js';

export const ANALYST_USAGE = `
  quarantine list [--state open|released|confirmed] [--user U] [--type T] [--since TIME] [--until TIME]
                                   (TIME: ISO 8601, epoch ms, or an age: 30m, 24h, 7d)
  quarantine show ID
  quarantine release ID --reason TEXT
  quarantine confirm ID --reason TEXT [--deny [--yes | --dry-run]]
                           (--deny: show the domains the evidence shows data going to, ask, then confirm
                            and add them to the learned deny list; --yes: without asking; --dry-run: show only)
  sessions list | show ID | queries ID [--limit N]
  deny list | add DOMAIN --reason TEXT | remove DOMAIN
  audit [--limit N]
  queries search [--name SUFFIX] [--session ID] [--user U] [--verdict V] [--since T] [--until T]
                 [--limit N] [--format table|csv|jsonl]
                           (the query log: every session's queries, live and ended; --name example.com
                            finds every name under it; T is an ISO time or epoch ms)

  common options: --url URL (default $DNSWARDEN_URL or http://127.0.0.1:9153)
                  --token TOKEN (default $DNSWARDEN_TOKEN, else the file data/admin-token)
                  --json (machine-readable output; a failure is {"error":{…}} on stderr)
`;

const COMMON = ANALYST_USAGE.slice(ANALYST_USAGE.indexOf('  common options'));

/** `dnswarden GROUP [VERB] --help`: the usage lines of that verb (or of the whole group), and the common options. */
export function analystHelp(group: string, verb: string | undefined): string {
  const entries: string[][] = []; // a usage line and its continuation lines (deeper indent)
  for (const l of ANALYST_USAGE.slice(0, ANALYST_USAGE.indexOf('  common options')).split('\n')) {
    if (l.trim() === '') continue;
    if (/^ {4,}/.test(l)) entries.at(-1)?.push(l);
    else entries.push([l]);
  }
  const ofGroup = entries.filter((e) => e[0]!.trim().split(/\s+/)[0] === group);
  const ofVerb = ofGroup.filter((e) => e[0]!.trim().slice(group.length).split('|').some((part) => part.trim().split(/\s+/)[0] === verb));
  const shown = (ofVerb.length > 0 ? ofVerb : ofGroup).map(([first, ...more]) => [`  dnswarden ${first!.trim()}`, ...more.map((l) => `          ${l}`)]);
  return `usage:\n${shown.flat().join('\n')}\n\n${COMMON}`;
}

// Names for the numbers in query history rows (a table is for a person; --json keeps the numbers).
const RCODE_NAMES: readonly string[] = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];
export const qtypeLabel = qtypeText;
export const rcodeLabel = (n: number): string => RCODE_NAMES[n] ?? `RCODE${n}`;

/** `--limit N`: a whole number from 1 on, or a usage error naming the option. */
export function positiveInt(option: string, raw: string): number {
  if (!/^[0-9]+$/.test(raw) || Number(raw) < 1 || !Number.isSafeInteger(Number(raw))) throw usageError(`${option}: expected a whole number from 1 on, got "${raw}"`);
  return Number(raw);
}

const AGE_UNITS_MS: Readonly<Record<string, number>> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `--since/--until TIME`: ISO 8601, epoch ms, or an age before `nowMs` (30m, 24h, 7d) → an ISO time for the API. */
export function timeOption(option: string, raw: string, nowMs: number): string {
  const age = /^([0-9]+)([smhdw])$/.exec(raw);
  const ms = age !== null ? nowMs - Number(age[1]) * AGE_UNITS_MS[age[2]!]! : /^[0-9]+$/.test(raw) ? Number(raw) : /^\d{4}-\d{2}-\d{2}/.test(raw) ? Date.parse(raw) : NaN;
  if (!Number.isFinite(ms)) throw usageError(`${option}: expected an ISO 8601 time, epoch ms or an age such as 30m, 24h, 7d; got "${raw}"`);
  return new Date(ms).toISOString();
}

interface Client {
  request(method: string, path: string, body?: unknown): Promise<unknown>;
  /** The body as text (CSV, JSONL exports). */
  requestText(method: string, path: string): Promise<string>;
}

const NO_TOKEN_HINT = 'no token was found: pass --token, set DNSWARDEN_TOKEN, or run where data/admin-token is';

/** The exit status for an HTTP error status. */
function exitForStatus(status: number): number {
  if (status === 401 || status === 403) return EXIT.auth;
  if (status === 404) return EXIT.notFound;
  if (status === 400) return EXIT.usage;
  if (status === 502 || status === 503 || status === 504) return EXIT.unavailable;
  return EXIT.failure;
}

function client(url: string, token: string | undefined): Client {
  const raw = async (method: string, path: string, body?: unknown): Promise<{ text: string; json: unknown }> => {
    let res: globalThis.Response;
    try {
      res = await fetch(`${url}${path}`, {
        method,
        headers: { ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(10_000),
      });
    } catch (err) {
      throw new CliError('ERR_UNREACHABLE', `cannot reach dnswarden at ${url}: ${messageOf((err as { cause?: unknown }).cause ?? err)}`, EXIT.unavailable);
    }
    const text = await res.text();
    let json: unknown = undefined;
    try {
      json = text === '' ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    if (!res.ok) {
      const e = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
      const hint = res.status === 401 && token === undefined ? `; ${NO_TOKEN_HINT}` : '';
      throw new CliError(e?.code ?? `HTTP_${res.status}`, `${`${res.status} ${e?.code ?? ''} ${e?.message ?? text}`.replace(/\s+/g, ' ').trim()}${hint}`, exitForStatus(res.status), res.status);
    }
    return { text, json };
  };
  return {
    request: async (method, path, body) => (await raw(method, path, body)).json,
    requestText: async (method, path) => (await raw(method, path)).text,
  };
}

/** Columns padded to the widest cell; long cells cut with an ellipsis so a row stays one line. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[], maxCell = 60): string {
  const cut = (s: string): string => (s.length > maxCell ? `${s.slice(0, maxCell - 1)}…` : s);
  const all = [headers, ...rows].map((r) => r.map(cut));
  const widths = headers.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return `${all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n')}\n`;
}

/** A history row's action; a row standing for a run of blocks (a flood, counted on one row) says how many. */
const actionText = (e: { action: string; count?: number }): string => (e.count !== undefined && e.count > 1 ? `${e.action} ×${e.count}` : e.action);
const iso = (v: unknown): string => (typeof v === 'string' ? v.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-');

function tokenFrom(explicit: string | undefined): string | undefined {
  if (explicit !== undefined) return explicit;
  if (process.env.DNSWARDEN_TOKEN !== undefined && process.env.DNSWARDEN_TOKEN !== '') return process.env.DNSWARDEN_TOKEN;
  if (existsSync('data/admin-token')) return readFileSync('data/admin-token', 'utf8').trim();
  return undefined;
}

/** One line from stdin (a terminal or a pipe); an empty answer at end of input. */
function ask(question: string): Promise<string> {
  process.stdout.write(question);
  return new Promise((ok) => {
    const rl = createInterface({ input: process.stdin, terminal: false });
    let answered = false;
    rl.once('line', (line) => { answered = true; rl.close(); ok(line); });
    rl.once('close', () => { if (!answered) ok(''); });
  });
}

export async function analystCommand(group: string, args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      url: { type: 'string' }, token: { type: 'string' }, json: { type: 'boolean' }, reason: { type: 'string' },
      deny: { type: 'boolean' }, yes: { type: 'boolean' }, 'dry-run': { type: 'boolean' }, state: { type: 'string' }, user: { type: 'string' }, type: { type: 'string' }, limit: { type: 'string' },
      name: { type: 'string' }, session: { type: 'string' }, verdict: { type: 'string' }, since: { type: 'string' }, until: { type: 'string' }, format: { type: 'string' },
    },
  });
  // Checked before anything is sent: a typo is a usage error (64), not a server round trip.
  const limit = values.limit === undefined ? undefined : String(positiveInt('--limit', values.limit));
  const since = values.since === undefined ? undefined : timeOption('--since', values.since, Date.now());
  const until = values.until === undefined ? undefined : timeOption('--until', values.until, Date.now());
  const api = client(values.url ?? process.env.DNSWARDEN_URL ?? 'http://127.0.0.1:9153', tokenFrom(values.token));
  const out = (s: string): void => void process.stdout.write(s);
  const json = values.json === true;
  const [verb, id] = group === 'audit' ? ['list', undefined] : positionals;
  const need = (v: string | undefined, what: string): string => {
    if (v === undefined || v === '') throw usageError(`${group} ${verb ?? ''}: ${what} is required`);
    return v;
  };
  const enc = encodeURIComponent;

  const key = `${group} ${verb ?? ''}`;
  switch (key) {
    case 'quarantine list': {
      const qs = new URLSearchParams();
      if (values.state !== undefined) qs.set('state', values.state);
      if (values.user !== undefined) qs.set('user', values.user);
      if (values.type !== undefined) qs.set('session_type', values.type);
      if (since !== undefined) qs.set('since', since);
      if (until !== undefined) qs.set('until', until);
      const r = (await api.request('GET', `/v1/quarantines?${qs}`)) as { quarantines: { id: string; state: string; raised_at: string; session: { id: string; user: string; type: string }; trigger: { name?: string; reason?: string } | null }[] };
      if (json) return out(`${JSON.stringify(r, null, 2)}\n`), 0;
      if (r.quarantines.length === 0) return out('no quarantines\n'), 0;
      out(table(['ID', 'STATE', 'RAISED', 'SESSION', 'USER', 'TYPE', 'TRIGGER'], r.quarantines.map((q) => [q.id, q.state, iso(q.raised_at), q.session.id, q.session.user, q.session.type, `${q.trigger?.name ?? ''} (${q.trigger?.reason ?? ''})`])));
      return 0;
    }
    case 'quarantine show': {
      const r = (await api.request('GET', `/v1/quarantines/${enc(need(id, 'ID'))}`)) as {
        quarantine: { id: string; state: string; raised_at: string; decided_by: string | null; decision_reason: string | null; session: { id: string; user: string; role: string; type: string; addresses: string[] };
          gated_sessions?: { id: string; user: string; addresses: string[]; matched: string }[];
          evidence: unknown };
        attacker_domains: string[];
      };
      if (json) return out(`${JSON.stringify(r, null, 2)}\n`), 0;
      const q = r.quarantine;
      const evidence = evidenceOf(q.evidence); // the API's answer, validated as the store's rows are
      const t = evidence.trigger;
      out(`quarantine ${q.id}  state ${q.state}  raised ${iso(q.raised_at)}${q.decided_by !== null ? `  decided by ${q.decided_by}: ${q.decision_reason ?? ''}` : ''}\n`);
      out(`session    ${q.session.id}  user ${q.session.user}  role ${q.session.role}  type ${q.session.type}  addresses ${q.session.addresses.join(', ')}\n`);
      for (const g of q.gated_sessions ?? []) out(`also holds ${g.id}  user ${g.user}  addresses ${g.addresses.join(', ')}  (registered later, same ${g.matched})\n`);
      if (evidence.unreadable !== undefined) out(`evidence   unreadable (${evidence.unreadable.error}): see --json\n`);
      out(t === null ? 'trigger    - (not recorded)\n' : `trigger    ${t.name} (${qtypeLabel(t.qtype)})  rule ${t.rule}: ${t.reason}${t.score !== undefined ? `  score ${t.score.toFixed(2)}` : ''}\n`);
      out(`domains    ${r.attacker_domains.join(', ') || '-'}\n\nsignals\n`);
      out(table(['SIGNAL', 'VALUE', 'WEIGHT', 'REASON'], (t?.signals ?? []).map((s) => [s.id, s.value.toFixed(2), s.weight.toFixed(2), s.reason])));
      out('\nrecent queries (oldest first)\n');
      out(table(['TIME', 'ACTION', 'RULE', 'SCORE', 'NAME', 'REASON'], evidence.recent.map((e) => [new Date(e.atMs).toISOString().slice(11, 23), actionText(e), e.rule, e.score?.toFixed(2) ?? '', e.name, e.action === 'answer' ? '' : (e.reason ?? '')]), 90));
      return 0;
    }
    case 'quarantine release':
    case 'quarantine confirm': {
      const path = `/v1/quarantines/${enc(need(id, 'ID'))}/${verb}`;
      if (verb === 'confirm' && values.deny === true) {
        // The deny list is for everyone: show it first and apply it only once the analyst says so.
        const dry = (await api.request('POST', path, { dry_run: true })) as { deny_candidates: string[] };
        if (values['dry-run'] === true) {
          if (json) return out(`${JSON.stringify(dry, null, 2)}\n`), 0;
          out(dry.deny_candidates.length === 0 ? 'no domain in the evidence qualifies for the deny list\n' : `would deny for everyone: ${dry.deny_candidates.join(', ')}\n`);
          return 0;
        }
        const reason = need(values.reason, '--reason');
        if (values.yes !== true) {
          if (json) throw new WardenError('ERR_BAD_REQUEST', 'quarantine confirm --deny --json: add --yes (or --dry-run); nothing changed');
          out(dry.deny_candidates.length === 0
            ? 'no domain in the evidence qualifies for the deny list (only scored blocks and the volume budget count)\n'
            : `the evidence shows data going to:\n${dry.deny_candidates.map((x) => `  ${x}\n`).join('')}`);
          const question = dry.deny_candidates.length === 0 ? `confirm ${id} without denying any domain? [y/N] ` : `confirm ${id} and deny these ${dry.deny_candidates.length} domain(s) for everyone? [y/N] `;
          if (!/^y(es)?$/i.test((await ask(question)).trim())) return out('nothing changed\n'), 1;
        }
        const r = (await api.request('POST', path, { reason, deny_domains: dry.deny_candidates })) as { quarantine: { id: string; state: string }; denied_domains: string[] };
        if (json) return out(`${JSON.stringify(r, null, 2)}\n`), 0;
        out(`quarantine ${r.quarantine.id} is now ${r.quarantine.state}${r.denied_domains.length > 0 ? `; denied for everyone: ${r.denied_domains.join(', ')}` : ''}\n`);
        return 0;
      }
      const r = (await api.request('POST', path, { reason: need(values.reason, '--reason') })) as { quarantine: { id: string; state: string } };
      if (json) return out(`${JSON.stringify(r, null, 2)}\n`), 0;
      out(`quarantine ${r.quarantine.id} is now ${r.quarantine.state}\n`);
      return 0;
    }
    case 'sessions list': {
      const r = (await api.request('GET', '/v1/sessions')) as { sessions: { id: string; user: string; role: string; type: string; origin: string; addresses: string[]; expires_at: string | null; quarantine: string | null }[] };
      if (json) return out(`${JSON.stringify(r, null, 2)}\n`), 0;
      out(table(['ID', 'USER', 'ROLE', 'TYPE', 'ORIGIN', 'EXPIRES', 'QUARANTINE', 'ADDRESSES'], r.sessions.map((s) => [s.id, s.user, s.role, s.type, s.origin, s.expires_at === null ? 'never' : iso(s.expires_at), s.quarantine ?? '-', s.addresses.join(',')])));
      return 0;
    }
    case 'sessions show':
    case 'sessions queries': {
      const sid = enc(need(id, 'ID'));
      const s = verb === 'show' ? ((await api.request('GET', `/v1/sessions/${sid}`)) as { session: Record<string, unknown> }) : undefined;
      const qs = limit !== undefined ? `?limit=${limit}` : '';
      const h = (await api.request('GET', `/v1/sessions/${sid}/queries${qs}`)) as { queries: { atMs: number; name: string; qtype: number; action: string; rule: string; rcode: number; score?: number; eventId?: string; count?: number }[] };
      if (json) return out(`${JSON.stringify({ ...s, ...h }, null, 2)}\n`), 0;
      if (s !== undefined) for (const [k, v] of Object.entries(s.session)) out(`${k.padEnd(14)}${Array.isArray(v) ? v.join(', ') : String(v)}\n`);
      out(`\n${h.queries.length} recent queries (oldest first)\n`);
      out(table(['TIME', 'QTYPE', 'RCODE', 'ACTION', 'RULE', 'SCORE', 'EVENT', 'NAME'], h.queries.map((e) => [new Date(e.atMs).toISOString().replace('T', ' ').slice(0, 23), qtypeLabel(e.qtype), rcodeLabel(e.rcode), actionText(e), e.rule, e.score?.toFixed(2) ?? '', e.eventId ?? '', e.name]), 90));
      return 0;
    }
    case 'deny list': {
      const r = (await api.request('GET', '/v1/deny')) as { domains: { domain: string; addedAtMs: number; addedBy: string; quarantineId: string | null; reason: string }[] };
      if (json) return out(`${JSON.stringify(r, null, 2)}\n`), 0;
      if (r.domains.length === 0) return out('the learned deny list is empty\n'), 0;
      out(table(['DOMAIN', 'ADDED', 'BY', 'QUARANTINE', 'REASON'], r.domains.map((d) => [d.domain, new Date(d.addedAtMs).toISOString(), d.addedBy, d.quarantineId ?? '-', d.reason])));
      return 0;
    }
    case 'deny add': {
      await api.request('POST', '/v1/deny', { domain: need(id, 'DOMAIN'), reason: need(values.reason, '--reason') });
      out(`${id} added to the learned deny list\n`);
      return 0;
    }
    case 'deny remove': {
      await api.request('DELETE', `/v1/deny/${enc(need(id, 'DOMAIN'))}${values.reason !== undefined ? `?reason=${enc(values.reason)}` : ''}`);
      out(`${id} removed from the learned deny list\n`);
      return 0;
    }
    case 'audit list': {
      const r = (await api.request('GET', `/v1/audit${limit !== undefined ? `?limit=${limit}` : ''}`)) as { audit: { atMs: number; actor: string; action: string; target: string; reason: string }[] };
      if (json) return out(`${JSON.stringify(r, null, 2)}\n`), 0;
      out(table(['TIME', 'ACTOR', 'ACTION', 'TARGET', 'REASON'], r.audit.map((a) => [new Date(a.atMs).toISOString(), a.actor, a.action, a.target, a.reason])));
      return 0;
    }
    case 'queries search': {
      const qs = new URLSearchParams();
      for (const k of ['name', 'session', 'user', 'verdict', 'since', 'until', 'limit'] as const) if (values[k] !== undefined) qs.set(k, values[k]);
      const format = values.format ?? (json ? 'json' : 'table');
      if (!['table', 'csv', 'jsonl', 'json'].includes(format)) throw new WardenError('ERR_BAD_REQUEST', 'queries search: --format must be table, csv or jsonl');
      if (format === 'csv' || format === 'jsonl') {
        qs.set('format', format);
        return out(await api.requestText('GET', `/v1/queries?${qs}`)), 0;
      }
      const r = (await api.request('GET', `/v1/queries?${qs}`)) as { queries: { time: string; name: string; qtype: number; session: string; user: string; result: string; action: string; rule: string; rcode: number; score: number | null }[] };
      if (format === 'json') return out(`${JSON.stringify(r, null, 2)}\n`), 0;
      if (r.queries.length === 0) return out('no queries match\n'), 0;
      out(table(['TIME', 'SESSION', 'USER', 'RESULT', 'RULE', 'SCORE', 'QTYPE', 'NAME'], r.queries.map((q) => [iso(q.time), q.session, q.user, q.result, q.rule, q.score?.toFixed(2) ?? '', String(q.qtype), q.name]), 90));
      return 0;
    }
    default:
      throw usageError(verb === undefined ? `${group}: a sub-command is required; see dnswarden ${group} --help` : `unknown command "${key.trim()}"; see dnswarden ${group} --help`);
  }
}
