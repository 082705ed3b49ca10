// Issue 4 (items 6 and 7): the Prometheus alert rules and the Grafana dashboard.
// - `promtool check rules` accepts deploy/prometheus/alerts.yml, and `promtool test rules` shows each
//   alert fires on the series it is about (and stays quiet otherwise). promtool must be installed
//   (Debian package `prometheus`; .ci/observability-checks.sh installs it): without it these tests FAIL.
// - Every metric name used in the dashboard's PromQL (and in the alert rules) exists on a running
//   dnswarden's /metrics, and every dashboard query parses (promtool again).
import { execFile } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { beforeAll, describe, expect, it, afterAll } from 'vitest';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { query } from '../helpers/dns-client.js';
import { base32Label } from '../helpers/exfil.js';
import { useSharedWarden } from '../helpers/shared-warden.js';
import { metricValue, startWarden, TEST_SESSION, type Warden } from '../helpers/warden.js';

const execFileAsync = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const RULES_PATH = join(ROOT, 'deploy/prometheus/alerts.yml');
const DASHBOARD_PATH = join(ROOT, 'deploy/grafana/dashboard.json');

function onPath(command: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, command);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

const PROMTOOL = onPath('promtool');
const NO_PROMTOOL = 'promtool is not installed: it comes from the Debian package "prometheus"; run `sudo bash .ci/observability-checks.sh` (CI does)';

function requirePromtool(): string {
  if (PROMTOOL === undefined) throw new Error(NO_PROMTOOL);
  return PROMTOOL;
}

async function promtool(args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(requirePromtool(), args, { timeout: 30_000 });
    return { code: 0, out: `${stdout}${stderr}` };
  } catch (err) {
    const e = err as { code?: unknown; stdout?: string; stderr?: string; message: string };
    return { code: typeof e.code === 'number' ? e.code : -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}${e.message}` };
  }
}

/** promtool with `input` on its stdin (`promtool check metrics` reads the exposition there). */
function promtoolStdin(args: string[], input: string): Promise<{ code: number; out: string }> {
  return new Promise((resolvePromise) => {
    const child = execFile(requirePromtool(), args, { timeout: 30_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1;
      resolvePromise({ code, out: `${stdout}${stderr}${err === null ? '' : err.message}` });
    });
    child.stdin!.end(input);
  });
}

// --- PromQL → metric names (enough PromQL for our own files; checked by its own table below)

const PROMQL_KEYWORDS = new Set(['and', 'or', 'unless', 'offset', 'bool', 'inf', 'nan', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'atan2']);

/** The metric names a PromQL expression selects (function names, labels, keywords and numbers removed). */
export function metricNames(expr: string): string[] {
  const labelValues = /^\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{[^}]*\})?\s*,/.exec(expr);
  if (labelValues !== null) return [labelValues[1]!];
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // strings (label values, regexes)
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // ranges and subqueries
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ') // grouping label lists
    .replace(/\b\d+(?:ms|s|m|h|d|w|y)\b/g, ' ') // durations (offset 1h)
    .replace(/\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b/g, ' '); // numbers (1e-9, 0.95)
  const names = new Set<string>();
  for (const m of stripped.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    if (m[2] !== undefined) continue; // a function call
    if (PROMQL_KEYWORDS.has(m[1]!)) continue;
    names.add(m[1]!);
  }
  return [...names].sort();
}

interface Dashboard {
  readonly uid: string;
  readonly title: string;
  readonly panels: readonly Panel[];
  readonly templating: { readonly list: readonly { readonly name: string; readonly query?: unknown; readonly definition?: string }[] };
}
interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly gridPos: { readonly x: number; readonly y: number; readonly w: number; readonly h: number };
  readonly datasource?: { readonly type: string; readonly uid: string };
  readonly targets?: readonly { readonly expr: string; readonly refId: string }[];
  readonly panels?: readonly Panel[];
}

function allPanels(panels: readonly Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

const dashboard = JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as Dashboard;
const dashboardExprs: string[] = allPanels(dashboard.panels).flatMap((p) => (p.targets ?? []).map((t) => t.expr));
const variableQueries: string[] = dashboard.templating.list.flatMap((v) => {
  const q = v.query;
  if (typeof q === 'string' && q.includes('(')) return [q];
  if (typeof q === 'object' && q !== null && typeof (q as { query?: unknown }).query === 'string') return [(q as { query: string }).query];
  return [];
});

interface RuleFile {
  readonly groups: readonly { readonly name: string; readonly rules: readonly { readonly alert: string; readonly expr: string; readonly for?: string; readonly labels?: Record<string, string>; readonly annotations: Record<string, string> }[] }[];
}
const rules = parseYaml(readFileSync(RULES_PATH, 'utf8')) as RuleFile;
const alertRules = rules.groups.flatMap((g) => g.rules);

/** Prometheus `/metrics` text → metric name → type, from the `# TYPE` lines. */
function metricTypes(text: string): Map<string, string> {
  const types = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(m[1]!, m[2]!);
  return types;
}

/** Undefined when `name` is exposed (a histogram's _bucket/_sum/_count count as its base); else why not. */
function missingReason(name: string, types: ReadonlyMap<string, string>): string | undefined {
  if (types.has(name)) return undefined;
  const suffix = /^(.*)_(bucket|sum|count)$/.exec(name);
  if (suffix !== null) {
    const baseType = types.get(suffix[1]!);
    if (baseType === 'histogram') return undefined;
    if (baseType === 'summary' && suffix[2] !== 'bucket') return undefined;
    if (baseType !== undefined) return `${name}: ${suffix[1]} is a ${baseType}, not a histogram`;
  }
  return `${name}: not on /metrics`;
}

describe('the PromQL metric-name extraction this file relies on', () => {
  it.each([
    ['sum(rate(dnswarden_queries_total[$__rate_interval]))', ['dnswarden_queries_total']],
    ['histogram_quantile(0.95, sum by (upstream, le) (rate(dnswarden_upstream_duration_seconds_bucket[5m])))', ['dnswarden_upstream_duration_seconds_bucket']],
    ['sum(rate(a_total{mode="observe",action!="answer"}[10m] offset 1h)) / clamp_min(sum(rate(b_total[5m])), 1e-9) > 3 * c', ['a_total', 'b_total', 'c']],
    ['dnswarden_alerts_pending > 0 and on (instance) up == 1', ['dnswarden_alerts_pending', 'up']],
    ['label_values(dnswarden_signal_value_bucket, signal)', ['dnswarden_signal_value_bucket']],
    ['label_values(dnswarden_signal_value_bucket{instance=~"$instance"}, signal)', ['dnswarden_signal_value_bucket']],
  ])('%s', (expr, expected) => {
    expect(metricNames(expr)).toEqual(expected);
  });
});

describe('deploy/prometheus/alerts.yml', () => {
  it('has the alert rules issue 4 asks for, each on the metric it is about', () => {
    const byName = new Map(alertRules.map((r) => [r.alert, r]));
    const expected: Record<string, string> = {
      DnswardenQuarantineRaised: 'dnswarden_quarantines_raised_total',
      DnswardenObserveWouldBlockJump: 'dnswarden_verdicts_total',
      DnswardenUpstreamFailures: 'dnswarden_upstream_failures_total',
      DnswardenWhoisFailures: 'dnswarden_domain_age_lookups_total',
      DnswardenMalformedPacketFlood: 'dnswarden_malformed_total',
      DnswardenAlertOutboxBacklog: 'dnswarden_alerts_pending',
      DnswardenAlertOutboxGrowing: 'dnswarden_alerts_pending',
      DnswardenQuarantineUnattended: 'dnswarden_oldest_open_quarantine_age_seconds',
      DnswardenServfailRatio: 'dnswarden_queries_total',
      DnswardenTransportFaults: 'dnswarden_transport_faults_total',
      DnswardenFleetQueueStuck: 'dnswarden_fleet_outbox_events',
    };
    expect([...byName.keys()].sort()).toEqual([...Object.keys(expected), 'DnswardenDown', 'DnswardenFleetDisconnected'].sort());
    // The command count only picks out the replicas that are members of a fleet.
    expect(metricNames(byName.get('DnswardenFleetDisconnected')!.expr)).toEqual(['dnswarden_fleet_redis_commands_total', 'dnswarden_fleet_redis_connected']);
    for (const [alert, metric] of Object.entries(expected)) expect(metricNames(byName.get(alert)!.expr), alert).toEqual([metric]);
    // `up` is Prometheus's own; the dnswarden metric only picks out the jobs that are dnswarden.
    expect(metricNames(byName.get('DnswardenDown')!.expr)).toEqual(['dnswarden_process_start_time_seconds', 'up']);
    for (const r of alertRules) {
      expect(['warning', 'critical'], r.alert).toContain(r.labels?.['severity']);
      expect(r.annotations['summary'], r.alert).toBeTruthy();
      expect(r.annotations['description'], r.alert).toBeTruthy();
    }
  });

  it('passes `promtool check rules`', async () => {
    const { code, out } = await promtool(['check', 'rules', RULES_PATH]);
    expect(out).toContain(`SUCCESS: ${alertRules.length} rules found`);
    expect(code, out).toBe(0);
  });

  it('each alert fires on the series it is about and stays quiet otherwise (`promtool test rules`)', async () => {
    const rule = (name: string) => alertRules.find((r) => r.alert === name)!;
    // Descriptions use only $labels; render them the way Prometheus does, to compare whole annotations.
    const described = (name: string, labels: Record<string, string>) =>
      rule(name).annotations['description']!.replace(/\{\{\s*\$labels\.(\w+)\s*\}\}/g, (_, l: string) => labels[l] ?? '');
    const firing = (alertname: string, labels: Record<string, string>, summary: string) => ({
      exp_labels: { severity: rule(alertname).labels!['severity']!, ...labels },
      exp_annotations: { summary, description: described(alertname, labels) },
    });

    const tests = [
      {
        name: 'a quarantine raised pages once, then clears',
        interval: '1m',
        input_series: [{ series: 'dnswarden_quarantines_raised_total{session_type="batch"}', values: '0 0 0 1 1 1 1 1 1 1 1 1 1' }, { series: 'dnswarden_quarantines_raised_total{session_type="interactive"}', values: '0x12' }],
        alert_rule_test: [
          { eval_time: '2m', alertname: 'DnswardenQuarantineRaised', exp_alerts: [] },
          { eval_time: '4m', alertname: 'DnswardenQuarantineRaised', exp_alerts: [firing('DnswardenQuarantineRaised', { session_type: 'batch' }, 'dnswarden quarantined 1 batch session(s) in the last 5 minutes')] },
          { eval_time: '12m', alertname: 'DnswardenQuarantineRaised', exp_alerts: [] },
        ],
      },
      {
        name: 'observe-mode would-block rate: 0.01/s for an hour and more, then 0.5/s',
        interval: '1m',
        input_series: [
          { series: 'dnswarden_verdicts_total{action="nxdomain",rule="threshold",mode="observe",session_type="interactive"}', values: '0+0.6x80 78+30x40' },
          // Enforced blocks and observe-mode answers are not would-blocks: a big rate on them changes nothing.
          { series: 'dnswarden_verdicts_total{action="nxdomain",rule="threshold",mode="enforce",session_type="batch"}', values: '0+6x80 480+600x40' },
          { series: 'dnswarden_verdicts_total{action="answer",rule="none",mode="observe",session_type="interactive"}', values: '0+60x80 4800+6000x40' },
        ],
        alert_rule_test: [
          { eval_time: '75m', alertname: 'DnswardenObserveWouldBlockJump', exp_alerts: [] },
          { eval_time: '100m', alertname: 'DnswardenObserveWouldBlockJump', exp_alerts: [firing('DnswardenObserveWouldBlockJump', { session_type: 'interactive' }, 'Would-block verdicts in observe mode jumped for interactive sessions (0.50/s)')] },
        ],
      },
      {
        name: 'observe-mode would-block rate: a steady 0.5/s for two hours is not a jump',
        interval: '1m',
        input_series: [{ series: 'dnswarden_verdicts_total{action="quarantine",rule="accumulation",mode="observe",session_type="batch"}', values: '0+30x130' }],
        alert_rule_test: [{ eval_time: '125m', alertname: 'DnswardenObserveWouldBlockJump', exp_alerts: [] }],
      },
      {
        name: 'upstream failures: 0.2/s fires for that upstream, 0.05/s does not',
        interval: '1m',
        input_series: [
          { series: 'dnswarden_upstream_failures_total{upstream="192.0.2.53:53",reason="timeout"}', values: '0+12x20' },
          { series: 'dnswarden_upstream_failures_total{upstream="192.0.2.54:53",reason="network"}', values: '0+3x20' },
        ],
        alert_rule_test: [
          { eval_time: '3m', alertname: 'DnswardenUpstreamFailures', exp_alerts: [] },
          { eval_time: '15m', alertname: 'DnswardenUpstreamFailures', exp_alerts: [firing('DnswardenUpstreamFailures', { upstream: '192.0.2.53:53', reason: 'timeout' }, 'Upstream 192.0.2.53:53 is failing (timeout, 0.20/s)')] },
        ],
      },
      {
        name: 'WHOIS failures: two thirds of WHOIS lookups failing fires; RDAP errors do not count',
        interval: '1m',
        input_series: [
          { series: 'dnswarden_domain_age_lookups_total{source="whois",result="error"}', values: '0+3x40' },
          { series: 'dnswarden_domain_age_lookups_total{source="whois",result="timeout"}', values: '0+3x40' },
          { series: 'dnswarden_domain_age_lookups_total{source="whois",result="ok"}', values: '0+3x40' },
          { series: 'dnswarden_domain_age_lookups_total{source="rdap",result="error"}', values: '0+600x40' },
        ],
        alert_rule_test: [
          { eval_time: '10m', alertname: 'DnswardenWhoisFailures', exp_alerts: [] },
          { eval_time: '35m', alertname: 'DnswardenWhoisFailures', exp_alerts: [firing('DnswardenWhoisFailures', {}, 'More than half of WHOIS domain-age lookups fail (66.67%)')] },
        ],
      },
      {
        name: 'WHOIS failures: a third failing does not fire',
        interval: '1m',
        input_series: [
          { series: 'dnswarden_domain_age_lookups_total{source="whois",result="timeout"}', values: '0+3x40' },
          { series: 'dnswarden_domain_age_lookups_total{source="whois",result="ok"}', values: '0+6x40' },
        ],
        alert_rule_test: [{ eval_time: '35m', alertname: 'DnswardenWhoisFailures', exp_alerts: [] }],
      },
      {
        name: 'malformed packets: 15/s over UDP fires, 1/s over TCP does not',
        interval: '1m',
        input_series: [
          { series: 'dnswarden_malformed_total{transport="udp",reason="short_header"}', values: '0+600x10' },
          { series: 'dnswarden_malformed_total{transport="udp",reason="bad_opt"}', values: '0+300x10' },
          { series: 'dnswarden_malformed_total{transport="tcp",reason="short_header"}', values: '0+60x10' },
        ],
        alert_rule_test: [
          { eval_time: '2m', alertname: 'DnswardenMalformedPacketFlood', exp_alerts: [] },
          { eval_time: '6m', alertname: 'DnswardenMalformedPacketFlood', exp_alerts: [firing('DnswardenMalformedPacketFlood', { transport: 'udp' }, 'Malformed DNS packet flood over udp (15.00/s)')] },
        ],
      },
      {
        name: 'alert outbox: a backlog that stays 15 minutes fires, one that drains does not; over 100 is critical',
        interval: '1m',
        input_series: [
          { series: 'dnswarden_alerts_pending{instance="a"}', values: '3x30' },
          { series: 'dnswarden_alerts_pending{instance="b"}', values: '150x30' },
          { series: 'dnswarden_alerts_pending{instance="c"}', values: '2x10 0x20' },
        ],
        alert_rule_test: [
          { eval_time: '10m', alertname: 'DnswardenAlertOutboxBacklog', exp_alerts: [] },
          {
            eval_time: '20m', alertname: 'DnswardenAlertOutboxBacklog',
            exp_alerts: [
              firing('DnswardenAlertOutboxBacklog', { instance: 'a' }, '3 quarantine alert event(s) undelivered for 15 minutes'),
              firing('DnswardenAlertOutboxBacklog', { instance: 'b' }, '150 quarantine alert event(s) undelivered for 15 minutes'),
            ],
          },
          { eval_time: '3m', alertname: 'DnswardenAlertOutboxGrowing', exp_alerts: [] },
          { eval_time: '6m', alertname: 'DnswardenAlertOutboxGrowing', exp_alerts: [firing('DnswardenAlertOutboxGrowing', { instance: 'b' }, '150 quarantine alert events waiting in the outbox')] },
        ],
      },
      {
        name: 'fleet: a member cut off from Redis for 2 minutes fires, a single node (never a command) does not; a queue stuck 10 minutes warns',
        interval: '1m',
        input_series: [
          { series: 'dnswarden_fleet_redis_connected{job="dns",instance="a"}', values: '1 1 0x10' },
          { series: 'dnswarden_fleet_redis_commands_total{job="dns",instance="a",connection="main"}', values: '5x12' },
          { series: 'dnswarden_fleet_redis_connected{job="dns",instance="single"}', values: '0x12' },
          { series: 'dnswarden_fleet_redis_commands_total{job="dns",instance="single",connection="main"}', values: '0x12' },
          { series: 'dnswarden_fleet_outbox_events{job="dns",instance="a"}', values: '0 0 1 2 2 2 2 2 2 2 2 2 2 2 2 2' },
          { series: 'dnswarden_fleet_outbox_events{job="dns",instance="b"}', values: '0 3 3 0x13' },
        ],
        alert_rule_test: [
          { eval_time: '3m', alertname: 'DnswardenFleetDisconnected', exp_alerts: [] },
          { eval_time: '5m', alertname: 'DnswardenFleetDisconnected', exp_alerts: [firing('DnswardenFleetDisconnected', { job: 'dns', instance: 'a' }, 'dnswarden a is cut off from the fleet\'s Redis')] },
          { eval_time: '10m', alertname: 'DnswardenFleetQueueStuck', exp_alerts: [] },
          { eval_time: '13m', alertname: 'DnswardenFleetQueueStuck', exp_alerts: [firing('DnswardenFleetQueueStuck', { job: 'dns', instance: 'a' }, '2 fleet change(s) queued on a for 10 minutes')] },
        ],
      },
      {
        // dnswarden exports the series as 0 from its start (no series before: "_"), so the first quarantine
        // after a restart is a rise increase() sees.
        name: 'the first quarantine after a start, on a series that did not exist before, pages',
        interval: '1m',
        input_series: [{ series: 'dnswarden_quarantines_raised_total{session_type="scheduled"}', values: '_x3 0 0 1 1 1 1 1 1 1 1 1 1 1' }],
        alert_rule_test: [
          { eval_time: '4m', alertname: 'DnswardenQuarantineRaised', exp_alerts: [] },
          { eval_time: '6m', alertname: 'DnswardenQuarantineRaised', exp_alerts: [firing('DnswardenQuarantineRaised', { session_type: 'scheduled' }, 'dnswarden quarantined 1 scheduled session(s) in the last 5 minutes')] },
          { eval_time: '16m', alertname: 'DnswardenQuarantineRaised', exp_alerts: [] },
        ],
      },
      {
        name: 'a series first scraped already at 1 (the 0 was never scraped) still pages, once',
        interval: '1m',
        input_series: [{ series: 'dnswarden_quarantines_raised_total{session_type="interactive"}', values: '_x3 1x12' }],
        alert_rule_test: [
          { eval_time: '2m', alertname: 'DnswardenQuarantineRaised', exp_alerts: [] },
          { eval_time: '4m', alertname: 'DnswardenQuarantineRaised', exp_alerts: [firing('DnswardenQuarantineRaised', { session_type: 'interactive' }, 'dnswarden quarantined 1 interactive session(s) in the last 5 minutes')] },
          { eval_time: '12m', alertname: 'DnswardenQuarantineRaised', exp_alerts: [] },
        ],
      },
      {
        name: 'an open quarantine unattended for over 30 minutes is critical; one decided in time is not',
        interval: '5m',
        input_series: [
          { series: 'dnswarden_oldest_open_quarantine_age_seconds{instance="a"}', values: '0 0+300x10' },
          { series: 'dnswarden_oldest_open_quarantine_age_seconds{instance="b"}', values: '0 0 300 600 900 1200 0x6' },
        ],
        alert_rule_test: [
          { eval_time: '35m', alertname: 'DnswardenQuarantineUnattended', exp_alerts: [] },
          { eval_time: '40m', alertname: 'DnswardenQuarantineUnattended', exp_alerts: [firing('DnswardenQuarantineUnattended', { instance: 'a' }, 'A quarantine has waited 35m 0s for an analyst')] },
        ],
      },
      {
        name: 'dnswarden down: a dnswarden target that stops answering scrapes fires; another job that is down does not',
        interval: '1m',
        input_series: [
          { series: 'up{job="dns-guard",instance="10.0.0.1:9153"}', values: '1 1 1 0x10' },
          { series: 'dnswarden_process_start_time_seconds{job="dns-guard",instance="10.0.0.1:9153"}', values: '100 100 100 _x10' },
          { series: 'up{job="dns-guard",instance="10.0.0.2:9153"}', values: '1x13' },
          { series: 'dnswarden_process_start_time_seconds{job="dns-guard",instance="10.0.0.2:9153"}', values: '100x13' },
          { series: 'up{job="node",instance="10.0.0.9:9100"}', values: '0x13' },
        ],
        alert_rule_test: [
          { eval_time: '4m', alertname: 'DnswardenDown', exp_alerts: [] },
          { eval_time: '8m', alertname: 'DnswardenDown', exp_alerts: [firing('DnswardenDown', { job: 'dns-guard', instance: '10.0.0.1:9153' }, 'dnswarden target 10.0.0.1:9153 is down')] },
        ],
      },
      {
        name: 'SERVFAIL ratio: 10% at 1/s fires for that instance; 1.7%, or 50% of a trickle, does not',
        interval: '1m',
        input_series: [
          { series: 'dnswarden_queries_total{instance="a",transport="udp",qtype="A",rcode="NOERROR"}', values: '0+540x20' },
          { series: 'dnswarden_queries_total{instance="a",transport="udp",qtype="A",rcode="SERVFAIL"}', values: '0+60x20' },
          { series: 'dnswarden_queries_total{instance="b",transport="udp",qtype="A",rcode="NOERROR"}', values: '0+590x20' },
          { series: 'dnswarden_queries_total{instance="b",transport="tcp",qtype="TXT",rcode="SERVFAIL"}', values: '0+10x20' },
          { series: 'dnswarden_queries_total{instance="c",transport="udp",qtype="A",rcode="NOERROR"}', values: '0+1x20' },
          { series: 'dnswarden_queries_total{instance="c",transport="udp",qtype="A",rcode="SERVFAIL"}', values: '0+1x20' },
        ],
        alert_rule_test: [
          { eval_time: '4m', alertname: 'DnswardenServfailRatio', exp_alerts: [] },
          { eval_time: '15m', alertname: 'DnswardenServfailRatio', exp_alerts: [firing('DnswardenServfailRatio', { instance: 'a' }, '10% of answers from a are SERVFAIL')] },
        ],
      },
      {
        name: 'transport faults: the first one after a start (from the 0 series) fires, and clears after 10 quiet minutes',
        interval: '1m',
        input_series: [
          { series: 'dnswarden_transport_faults_total{instance="a",transport="udp"}', values: '_x2 0 0 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1' },
          { series: 'dnswarden_transport_faults_total{instance="a",transport="tcp"}', values: '_x2 0x17' },
          { series: 'dnswarden_transport_faults_total{instance="b",transport="udp"}', values: '0x19' },
        ],
        alert_rule_test: [
          { eval_time: '4m', alertname: 'DnswardenTransportFaults', exp_alerts: [] },
          { eval_time: '7m', alertname: 'DnswardenTransportFaults', exp_alerts: [firing('DnswardenTransportFaults', { instance: 'a' }, 'Transport faults on a in the last 10 minutes')] },
          { eval_time: '17m', alertname: 'DnswardenTransportFaults', exp_alerts: [] },
        ],
      },
    ];

    const dir = mkdtempSync(join(tmpdir(), 'dnswarden-promtool-'));
    try {
      const file = join(dir, 'alerts.test.yml');
      writeFileSync(file, stringifyYaml({ rule_files: [RULES_PATH], evaluation_interval: '1m', tests }));
      const { code, out } = await promtool(['test', 'rules', file]);
      expect(out).toContain('SUCCESS');
      expect(code, out).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('deploy/grafana/dashboard.json', () => {
  const t = useSharedWarden();

  beforeAll(async () => {
    // A few queries so counters and histograms have samples, not just their # TYPE lines.
    await query({ server: t.warden.dns, name: FIXTURE.a.name, type: 'A' });
    await query({ server: t.warden.dns, name: FIXTURE.a.name, type: 'A' });
    await query({ server: t.warden.dns, name: FIXTURE.txt.name, type: 'TXT', transport: 'tcp' });
  });

  it('covers what issue 4 lists: verdicts by action and session type, signals, quarantines, cache hit ratio, upstream latency', () => {
    const used = new Set([...dashboardExprs, ...variableQueries].flatMap(metricNames));
    for (const name of [
      'dnswarden_queries_total', 'dnswarden_verdicts_total', 'dnswarden_signal_value_bucket', 'dnswarden_quarantines_raised_total',
      'dnswarden_sessions_quarantined', 'dnswarden_cache_hits_total', 'dnswarden_cache_misses_total', 'dnswarden_upstream_duration_seconds_bucket',
    ]) expect(used, name).toContain(name);
    expect(dashboardExprs.some((e) => /by \((?=[^)]*\baction\b)(?=[^)]*\bsession_type\b)[^)]*\)/.test(e) && e.includes('dnswarden_verdicts_total'))).toBe(true);
    expect(dashboardExprs.some((e) => /by \((?=[^)]*\bsignal\b)[^)]*\)/.test(e) && e.includes('dnswarden_signal_value_bucket'))).toBe(true);
  });

  it('covers what the operability issue lists: an instance variable every query honours, signals by verdict, block_at, memory, event loop, released vs raised', () => {
    const instance = dashboard.templating.list.find((v) => v.name === 'instance') as { query?: { query?: string }; multi?: boolean; includeAll?: boolean; allValue?: string } | undefined;
    expect(instance?.query?.query).toBe('label_values(dnswarden_queries_total, instance)');
    expect(instance).toMatchObject({ multi: true, includeAll: true, allValue: '.*' });
    // Every selector of a dnswarden metric, in every panel and in the other variables, is scoped to $instance.
    const selectors = [...dashboardExprs, ...variableQueries.filter((q) => q !== instance?.query?.query)].flatMap((e) => [...e.matchAll(/\b(dnswarden_\w+)(\{[^}]*\})?/g)]);
    expect(selectors.length).toBeGreaterThan(40);
    expect(selectors.filter((m) => !(m[2] ?? '').includes('instance=~"$instance"')).map((m) => m[0])).toEqual([]);
    expect(dashboardExprs.some((e) => /by \((?=[^)]*\bsignal\b)(?=[^)]*\baction\b)[^)]*\)/.test(e) && e.includes('dnswarden_signal_value_bucket'))).toBe(true);
    const used = new Set(dashboardExprs.flatMap(metricNames));
    for (const name of ['dnswarden_policy_block_at', 'dnswarden_process_resident_memory_bytes', 'dnswarden_nodejs_heap_size_used_bytes', 'dnswarden_nodejs_eventloop_lag_p99_seconds', 'dnswarden_refused_total', 'dnswarden_oldest_open_quarantine_age_seconds']) {
      expect(used, name).toContain(name);
    }
    const released = dashboardExprs.find((e) => e.includes('decision="released"') && e.includes('dnswarden_quarantines_raised_total'));
    expect(released).toMatch(/dnswarden_quarantine_decisions_total\{[^}]*decision="released"[^}]*\}\[1d\]\)\) \/ clamp_min\(sum\(increase\(dnswarden_quarantines_raised_total/);
  });

  it('/metrics has the signal histogram by verdict action and block_at per session type', async () => {
    const text = (await t.warden.admin('/metrics')).text;
    expect(text).toMatch(/^dnswarden_signal_value_bucket\{signal="name_length",action="nxdomain",le="\+Inf"\} \d+$/m);
    expect(metricValue(text, 'dnswarden_policy_block_at', { session_type: 'interactive' })).toBe(0.75);
    expect(metricValue(text, 'dnswarden_policy_block_at', { session_type: 'batch' })).toBe(0.7);
  });

  it('is a well-formed Grafana dashboard: unique ids, 24-column grid, a Prometheus datasource and a query on every panel', () => {
    expect(dashboard.uid).toBe('dnswarden-overview');
    const panels = allPanels(dashboard.panels);
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    for (const p of panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      if (p.type === 'row') continue;
      expect(p.datasource, p.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(p.targets?.length ?? 0, p.title).toBeGreaterThan(0);
      for (const t of p.targets ?? []) expect(t.expr.trim(), p.title).not.toBe('');
    }
    expect(dashboardExprs.length).toBeGreaterThan(25);
  });

  it('uses only metric names that exist on /metrics (histograms by their _bucket/_sum/_count series)', async () => {
    const res = await t.warden.admin('/metrics');
    expect(res.status).toBe(200);
    const types = metricTypes(res.text);
    expect(types.get('dnswarden_signal_value')).toBe('histogram');
    const used = [...new Set([...dashboardExprs, ...variableQueries].flatMap(metricNames))].sort();
    expect(used.length).toBeGreaterThan(15);
    expect(used.map((n) => missingReason(n, types)).filter((r) => r !== undefined)).toEqual([]);
  });

  it('/metrics of a live server passes `promtool check metrics` (names, suffixes, types, help)', async () => {
    await query({ server: t.warden.dns, name: FIXTURE.a.name, type: 'A', transport: 'tcp' });
    const res = await t.warden.admin('/metrics');
    expect(res.status).toBe(200);
    // Every family the issue named, under its fixed name, with samples: the lint ran on real output.
    const types = metricTypes(res.text);
    expect(types.get('dnswarden_score')).toBe('histogram');
    expect(types.get('dnswarden_process_cpu_seconds_total')).toBe('counter');
    expect(types.get('dnswarden_nodejs_active_handles')).toBe('gauge');
    expect([...types.keys()].filter((n) => n.includes('process_process') || (types.get(n) !== 'counter' && n.endsWith('_total')))).toEqual([]);
    const { code, out } = await promtoolStdin(['check', 'metrics'], res.text);
    expect(out.trim()).toBe('');
    expect(code, out).toBe(0);
  });

  it('the alert rules, too, use only metric names that exist on /metrics', async () => {
    const types = metricTypes((await t.warden.admin('/metrics')).text);
    // `up` is not dnswarden's: Prometheus records it per target.
    const used = [...new Set(alertRules.flatMap((r) => metricNames(r.expr)))].filter((n) => n !== 'up').sort();
    expect(used).toHaveLength(13);
    expect(used.map((n) => missingReason(n, types)).filter((r) => r !== undefined)).toEqual([]);
  });

  it('every dashboard query is valid PromQL (promtool parses them as recording rules)', async () => {
    const exprs = [...new Set([...dashboardExprs, ...variableQueries.map((q) => /^label_values\((.*),\s*\w+\)$/.exec(q)![1]!)])]
      .map((e) => e.replaceAll('$__rate_interval', '5m').replaceAll('$signal', '.+').replaceAll('$instance', '.*'));
    expect(exprs.every((e) => !e.includes('$'))).toBe(true);
    const dir = mkdtempSync(join(tmpdir(), 'dnswarden-promtool-'));
    try {
      const file = join(dir, 'dashboard-queries.yml');
      writeFileSync(file, stringifyYaml({ groups: [{ name: 'dashboard', rules: exprs.map((expr, i) => ({ record: `dashboard:query_${i}`, expr })) }] }));
      const { code, out } = await promtool(['check', 'rules', file]);
      expect(out).toContain(`SUCCESS: ${exprs.length} rules found`);
      expect(code, out).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('series exported from the start (the first event after a restart is a rise alerts can see)', () => {
  const BATCH = { id: 'obs-batch', addresses: ['127.0.0.2/32'], type: 'batch', user: 'ci-bot', role: 'builder' } as const;
  let upstream: Upstream;
  let warden: Warden;
  beforeAll(async () => {
    upstream = await startUpstream();
    warden = await startWarden({ sessions: { static: [{ ...TEST_SESSION, addresses: [...TEST_SESSION.addresses] }, { ...BATCH, addresses: [...BATCH.addresses] }] } }, { upstream });
  });
  afterAll(async () => {
    await warden?.close();
    await upstream?.stop();
  });

  it('a fresh server exports every known label set at 0, before anything happened', async () => {
    const text = (await warden.admin('/metrics')).text;
    const zero: [string, Record<string, string>][] = [
      ...['interactive', 'batch', 'scheduled'].map((t): [string, Record<string, string>] => ['dnswarden_quarantines_raised_total', { session_type: t }]),
      ['dnswarden_quarantine_decisions_total', { decision: 'released' }],
      ['dnswarden_transport_faults_total', { transport: 'udp' }],
      ['dnswarden_transport_faults_total', { transport: 'tcp' }],
      ['dnswarden_malformed_total', { transport: 'udp', reason: 'short_header' }],
      ['dnswarden_queries_total', { transport: 'udp', qtype: 'A', rcode: 'SERVFAIL' }],
      ['dnswarden_verdicts_total', { action: 'quarantine', rule: 'accumulation', mode: 'enforce', session_type: 'batch' }],
      ['dnswarden_upstream_failures_total', { upstream: upstream.hostPort, reason: 'timeout' }],
      ['dnswarden_upstream_duration_seconds_count', { upstream: upstream.hostPort }],
      ['dnswarden_score_count', { session_type: 'scheduled' }],
      ['dnswarden_registrations_total', { result: 'ok' }],
      ['dnswarden_alerts_delivered_total', { format: 'json' }],
      ['dnswarden_oldest_open_quarantine_age_seconds', {}],
    ];
    for (const [name, labels] of zero) expect(metricValue(text, name, labels), `${name}${JSON.stringify(labels)}`).toBe(0);
  });

  it('the first quarantine counts from 0 to 1, and the oldest open quarantine ages until it is released', async () => {
    let quarantineId: string | undefined;
    for (let i = 0; i < 8 && quarantineId === undefined; i++) {
      const reply = await query({ server: warden.dns, bind: '127.0.0.2', name: `${base32Label(`obs-${i}`)}.exfil-obs.example`, type: 'TXT' });
      quarantineId = /^session quarantined \((qr-[^)]+)\)/.exec(reply.ede?.text ?? '')?.[1];
    }
    expect(quarantineId).toBeDefined();
    let text = (await warden.admin('/metrics')).text;
    expect(metricValue(text, 'dnswarden_quarantines_raised_total', { session_type: 'batch' })).toBe(1);
    const deadline = Date.now() + 30_000;
    while ((metricValue(text, 'dnswarden_oldest_open_quarantine_age_seconds') ?? 0) < 1 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 200));
      text = (await warden.admin('/metrics')).text;
    }
    expect(metricValue(text, 'dnswarden_oldest_open_quarantine_age_seconds')).toBeGreaterThanOrEqual(1);
    const released = await warden.admin(`/v1/quarantines/${quarantineId!}/release`, { method: 'POST', body: { reason: 'test: observability' } });
    expect(released.status).toBe(200);
    expect(metricValue((await warden.admin('/metrics')).text, 'dnswarden_oldest_open_quarantine_age_seconds')).toBe(0);
  });
});
