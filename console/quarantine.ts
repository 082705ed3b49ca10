// The quarantine view: the session and who it acts for, the trigger with every signal, the timeline chart, the
// queries before and since, the audit entries, and the decision form (only for token kinds that may decide; the
// API checks the kind again and audits the decision). Never decides anything itself.
import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type uPlot from 'uplot';
import { getJson, postJson, type AuditEntry, type Caller, type HistoryEntry, type QuarantineDetail } from './api.js';
import { chartRows, drawTimeline } from './chart.js';
import { age, canDecide, ErrorNote, fixed, Link, messageOf, qtype, topSignals, utc } from './ui.js';

// --- 2. one quarantine

function HistoryTable({ entries, caption }: { entries: readonly HistoryEntry[]; caption: string }) {
  if (entries.length === 0) return html`<p class="empty">None.</p>`;
  return html`<table class="history">
    <caption class="sr-only">${caption}</caption>
    <thead><tr><th scope="col">Time (UTC)</th><th scope="col">Name</th><th scope="col">Type</th><th scope="col">Action</th><th scope="col">Rule</th><th scope="col">Score</th><th scope="col">Reason</th></tr></thead>
    <tbody>${entries.map((e) => html`<tr class=${e.action === 'answer' ? '' : 'blocked'}>
      <td>${utc(e.atMs)}</td><td class="name">${e.name}</td><td>${qtype(e.qtype)}</td>
      <td>${e.action}${e.count !== undefined && e.count > 1 ? ` ×${e.count}` : ''}</td><td>${e.rule}</td><td>${fixed(e.score)}</td><td>${e.action === 'answer' ? '' : e.reason ?? ''}</td>
    </tr>`)}</tbody>
  </table>`;
}

function Timeline({ entries, blockAt }: { entries: readonly HistoryEntry[]; blockAt: number | null }) {
  const ref = useRef<HTMLDivElement>(null);
  const rows = chartRows(entries);
  useEffect(() => {
    if (ref.current === null || rows.length === 0) return undefined;
    const plot: uPlot = drawTimeline(ref.current, rows, blockAt, Math.max(600, Math.min(1200, ref.current.clientWidth || 1100)));
    return () => plot.destroy();
  }, [entries, blockAt]);
  const blocked = rows.filter((r) => r.blocked).length;
  return html`<figure class="timeline">
    <div ref=${ref} class="chart" role="img" aria-label=${`Scores of ${rows.length} queries over time: ${rows.length - blocked} answered, ${blocked} blocked; threshold ${blockAt ?? 'unknown'}`}></div>
    <figcaption>${rows.length} queries: ${rows.length - blocked} answered (green), ${blocked} blocked (red); dashed line: the ${blockAt === null ? '' : `${blockAt} `}threshold of this session type. Queries that were not scored are drawn at 0.</figcaption>
  </figure>`;
}

function Decision({ detail, onDone }: { detail: QuarantineDetail; onDone: (message: string) => void }) {
  const q = detail.quarantine;
  const [reason, setReason] = useState('');
  const [deny, setDeny] = useState<string[]>([]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const decide = async (verb: 'release' | 'confirm'): Promise<void> => {
    if (reason.trim() === '') {
      setError('A reason is required: it goes into the audit log.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const body = verb === 'confirm' ? { reason: reason.trim(), deny_domains: deny } : { reason: reason.trim() };
      const r = await postJson<{ quarantine: { state: string }; denied_domains?: string[] }>(`/v1/quarantines/${encodeURIComponent(q.id)}/${verb}`, body);
      setReason('');
      onDone(`Quarantine ${q.id} is now ${r.quarantine.state}${(r.denied_domains ?? []).length > 0 ? `; denied for everyone: ${r.denied_domains!.join(', ')}` : ''}.`);
    } catch (e) {
      setError(messageOf(e));
    } finally {
      setBusy(false);
    }
  };
  const toggle = (d: string): void => setDeny(deny.includes(d) ? deny.filter((x) => x !== d) : [...deny, d]);
  return html`<section class="decision" aria-labelledby="decide-title">
    <h2 id="decide-title">Decision</h2>
    <label for="reason">Reason (recorded in the audit log)</label>
    <textarea id="reason" rows="3" maxlength="1000" required value=${reason} onInput=${(e: Event) => setReason((e.target as HTMLTextAreaElement).value)}></textarea>
    ${q.state === 'open' && detail.attacker_domains.length > 0 ? html`<fieldset>
      <legend>With a confirmation, also deny for every session:</legend>
      ${detail.attacker_domains.map((d) => html`<label class="check"><input type="checkbox" checked=${deny.includes(d)} onChange=${() => toggle(d)} /> ${d}</label>`)}
    </fieldset>` : null}
    <div class="buttons">
      <button type="button" disabled=${busy} onClick=${() => void decide('release')}>Release</button>
      ${q.state === 'open' ? html`<button type="button" class="danger" disabled=${busy} onClick=${() => void decide('confirm')}>Confirm</button>` : null}
    </div>
    <${ErrorNote} error=${error} />
  </section>`;
}

export function QuarantineView({ id, caller }: { id: string; caller: Caller }) {
  const [detail, setDetail] = useState<QuarantineDetail | null>(null);
  const [audit, setAudit] = useState<AuditEntry[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const load = async (): Promise<void> => {
    try {
      const [d, a] = await Promise.all([getJson<QuarantineDetail>(`/v1/quarantines/${encodeURIComponent(id)}`), getJson<{ audit: AuditEntry[] }>('/v1/audit?limit=5000')]);
      setDetail(d);
      setAudit(a.audit.filter((e) => e.target === id));
      setError(null);
    } catch (e) {
      setError(messageOf(e));
    }
  };
  useEffect(() => {
    setDetail(null);
    void load();
    const timer = setInterval(() => void load(), 15_000);
    return () => clearInterval(timer);
  }, [id]);
  if (detail === null) return html`<section><h1>Quarantine ${id}</h1>${error === null ? html`<p>Loading…</p>` : html`<${ErrorNote} error=${error} />`}</section>`;
  const q = detail.quarantine;
  const t = q.evidence.trigger;
  const triggerEntry: HistoryEntry = { atMs: t.atMs ?? Date.parse(q.raised_at), name: t.name, qtype: t.qtype ?? 0, action: t.action ?? 'quarantine', rule: t.rule, rcode: 3, enforced: true, reason: t.reason, ...(t.score !== undefined ? { score: t.score } : {}), ...(t.eventId !== undefined ? { eventId: t.eventId } : {}) };
  const before = q.evidence.recent.filter((e) => e.eventId === undefined || e.eventId !== t.eventId);
  const timeline = [...before, triggerEntry, ...detail.history_since_raised];
  return html`<article aria-labelledby="q-title">
    <p><${Link} href="/ui/">← Quarantines</${Link}></p>
    <div class="title-row">
      <h1 id="q-title">Quarantine ${q.id}</h1>
      <span class=${`badge big ${q.state}`}>${q.state}</span>
      ${q.durable ? null : html`<span class="badge warn">not saved yet (retrying)</span>`}
    </div>
    ${notice === null ? null : html`<p class="notice" role="status">${notice}</p>`}
    <${ErrorNote} error=${error} />
    <div class="grid">
      <section aria-labelledby="who-title" class="card">
        <h2 id="who-title">Session and who it acts for</h2>
        <dl>
          <dt>Session</dt><dd>${q.session.id}</dd>
          <dt>User</dt><dd>${q.session.user}</dd>
          <dt>Role</dt><dd>${q.session.role}</dd>
          <dt>Session type</dt><dd>${q.session.type}</dd>
          <dt>Addresses</dt><dd>${q.session.addresses.join(', ')}</dd>
          <dt>Raised</dt><dd>${utc(Date.parse(q.raised_at))} (${age(Date.parse(q.raised_at))} ago)</dd>
          ${q.decided_by === null ? null : html`<dt>Decided</dt><dd>${q.state} by ${q.decided_by} at ${utc(Date.parse(q.decided_at!))}: ${q.decision_reason}</dd>`}
        </dl>
        ${q.gated_sessions.length === 0 ? null : html`<h3>Also held (registered later, same address or user)</h3><ul>${q.gated_sessions.map((g) => html`<li>${g.id} (${g.user}, ${g.addresses.join(', ')}; same ${g.matched})</li>`)}</ul>`}
      </section>
      <section aria-labelledby="trigger-title" class="card">
        <h2 id="trigger-title">Trigger</h2>
        <dl>
          <dt>Query</dt><dd class="name" id="trigger-name">${t.name}</dd>
          <dt>Type</dt><dd>${qtype(t.qtype)}</dd>
          <dt>Rule</dt><dd>${t.rule}</dd>
          <dt>Score</dt><dd>${fixed(t.score)}${detail.block_at === null ? '' : ` (threshold ${detail.block_at})`}</dd>
          <dt>Why</dt><dd>${t.reason}</dd>
          <dt>Domains</dt><dd>${detail.attacker_domains.length === 0 ? 'none qualifies for the deny list' : detail.attacker_domains.join(', ')}</dd>
        </dl>
      </section>
    </div>
    ${(t.signals ?? []).length === 0 ? null : html`<section aria-labelledby="signals-title">
      <h2 id="signals-title">Signals</h2>
      <table class="signals">
        <thead><tr><th scope="col">Signal</th><th scope="col">Value</th><th scope="col">Weight</th><th scope="col">Contribution</th><th scope="col">Reason</th></tr></thead>
        <tbody>${topSignals(t.signals, 99).map((s) => html`<tr><td>${s.id}</td><td>${s.value.toFixed(2)}</td><td>${s.weight.toFixed(2)}</td><td>${(s.value * s.weight).toFixed(3)}</td><td>${s.reason}</td></tr>`)}</tbody>
      </table>
    </section>`}
    <section aria-labelledby="timeline-title">
      <h2 id="timeline-title">Timeline</h2>
      <${Timeline} entries=${timeline} blockAt=${detail.block_at} />
    </section>
    ${canDecide(caller) && q.state !== 'released' ? html`<${Decision} detail=${detail} onDone=${(m: string) => { setNotice(m); void load(); }} />` : null}
    <section aria-labelledby="before-title">
      <h2 id="before-title">Queries before the quarantine</h2>
      <${HistoryTable} entries=${[...before, triggerEntry]} caption="Queries before the quarantine, oldest first" />
    </section>
    <section aria-labelledby="since-title">
      <h2 id="since-title">Queries since</h2>
      <${HistoryTable} entries=${detail.history_since_raised} caption="Queries since the quarantine, oldest first" />
    </section>
    <section aria-labelledby="audit-title">
      <h2 id="audit-title">Audit</h2>
      ${audit.length === 0 ? html`<p class="empty">No decision yet.</p>` : html`<table class="audit">
        <thead><tr><th scope="col">Time (UTC)</th><th scope="col">Actor</th><th scope="col">Action</th><th scope="col">Reason</th></tr></thead>
        <tbody>${audit.map((a) => html`<tr><td>${utc(a.atMs)}</td><td>${a.actor}</td><td>${a.action}</td><td>${a.reason}</td></tr>`)}</tbody>
      </table>`}
    </section>
  </article>`;
}

