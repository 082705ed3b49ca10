// Shared pieces of the console's views: formatting, the in-page navigation (each view has its own address
// under /ui/) and the small components every view uses. Holds no data and calls no API.
import { html } from 'htm/preact';
import { ApiError, type Caller, type Signal } from './api.js';

// --- small helpers

export const messageOf = (e: unknown): string => (e instanceof ApiError ? `${e.message} (${e.code})` : e instanceof Error ? e.message : String(e));
export const utc = (ms: number): string => new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
export function age(ms: number): string {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 129_600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} d`;
}
const QTYPES: Record<number, string> = { 1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 65: 'HTTPS' };
export const qtype = (n: number | undefined): string => (n === undefined ? '' : QTYPES[n] ?? String(n));
export const fixed = (n: number | null | undefined): string => (typeof n === 'number' ? n.toFixed(2) : '');
export const topSignals = (signals: readonly Signal[] | undefined, n = 3): Signal[] => [...(signals ?? [])].sort((a, b) => b.value * b.weight - a.value * a.weight).slice(0, n);
export const canDecide = (c: Caller): boolean => c.kind === 'admin' || c.kind === 'analyst';

// --- navigation: each view has its own address under /ui/

let setPathGlobal: (p: string) => void = () => {};
/** The frame tells navigate() how to switch views. */
export function onNavigate(f: (p: string) => void): void {
  setPathGlobal = f;
}
export function navigate(path: string): void {
  history.pushState(null, '', path);
  setPathGlobal(path);
  window.scrollTo(0, 0);
}

export function Link(props: { href: string; children?: unknown; class?: string; label?: string }) {
  const onClick = (e: MouseEvent): void => {
    if (e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(props.href);
  };
  return html`<a href=${props.href} class=${props.class} aria-label=${props.label} onClick=${onClick}>${props.children}</a>`;
}

export function ErrorNote({ error }: { error: string | null }) {
  return error === null ? null : html`<p class="error" role="alert">${error}</p>`;
}

