// Runs `dig` (bind9-dnsutils) the way a person would and parses what it prints: status, flags,
// EDE lines and the answer section. Owns nothing but the child process it waits for.
import { execFile } from 'node:child_process';

export interface DigOptions {
  readonly server: { readonly address: string; readonly port: number };
  readonly name: string;
  readonly type?: string;
  readonly tcp?: boolean;
  /** Source address (`dig -b`). */
  readonly bind?: string;
  /** Extra dig arguments, e.g. ['+bufsize=512', '+noedns', '+ignore']. */
  readonly args?: readonly string[];
  readonly timeoutMs?: number;
}

export interface DigAnswer {
  readonly name: string;
  readonly ttl: number;
  readonly type: string;
  readonly data: string;
}

export interface DigResult {
  readonly exitCode: number;
  /** NOERROR, NXDOMAIN, REFUSED, SERVFAIL, … (undefined when dig got no reply). */
  readonly status: string | undefined;
  readonly flags: readonly string[];
  /** `; EDE: 18 (Prohibited): (no session for 127.0.0.2)` → { code: 18, name: 'Prohibited', text: '…' }. */
  readonly ede: { readonly code: number; readonly name: string; readonly text: string } | undefined;
  readonly answers: readonly DigAnswer[];
  /** "(TCP)" / "(UDP)" from the ;; SERVER: line. */
  readonly transport: string | undefined;
  readonly truncatedRetry: boolean;
  readonly stdout: string;
  readonly stderr: string;
}

export function parseDig(stdout: string): Omit<DigResult, 'exitCode' | 'stdout' | 'stderr'> {
  const status = /status: ([A-Z0-9]+)/.exec(stdout)?.[1];
  const flags = /;; flags: ([a-z ]*);/.exec(stdout)?.[1]?.trim().split(/\s+/).filter((f) => f !== '') ?? [];
  // dig 9.18: "; EDE: 18 (Prohibited): (extra text)"; the text part is absent when the server sent none.
  const edeMatch = /^; EDE: (\d+)(?: \(([^)]*)\))?(?:: \((.*)\))?\s*$/m.exec(stdout);
  const ede = edeMatch === null ? undefined : { code: Number(edeMatch[1]), name: edeMatch[2] ?? '', text: edeMatch[3] ?? '' };
  const answers: DigAnswer[] = [];
  const section = /;; ANSWER SECTION:\n([\s\S]*?)(?:\n\n|$)/.exec(stdout)?.[1] ?? '';
  for (const line of section.split('\n')) {
    const m = /^(\S+)\s+(\d+)\s+IN\s+(\S+)\s+(.*)$/.exec(line);
    if (m !== null) answers.push({ name: m[1]!, ttl: Number(m[2]), type: m[3]!, data: m[4]! });
  }
  const transport = /;; SERVER: \S+ \((UDP|TCP)\)/.exec(stdout)?.[1];
  return { status, flags, ede, answers, transport, truncatedRetry: stdout.includes('Truncated, retrying in TCP mode') };
}

export function dig(opts: DigOptions): Promise<DigResult> {
  const args = [`@${opts.server.address}`, '-p', String(opts.server.port)];
  if (opts.bind !== undefined) args.push('-b', opts.bind);
  args.push(opts.name, opts.type ?? 'A', '+tries=1', `+timeout=${Math.max(1, Math.ceil((opts.timeoutMs ?? 3000) / 1000))}`);
  if (opts.tcp === true) args.push('+tcp');
  args.push(...(opts.args ?? []));
  return new Promise((ok) => {
    execFile('dig', args, { timeout: (opts.timeoutMs ?? 3000) + 5000 }, (err, stdout, stderr) => {
      const exitCode = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : -1;
      ok({ exitCode, stdout, stderr, ...parseDig(stdout) });
    });
  });
}
