// Issue 17, the analyst console in a real browser (Debian's headless Chromium driven by playwright-core), against
// dnswarden started in-process with a real NSD upstream and real DNS traffic:
// the shell without a token shows the login form and no data (and a strict CSP); an analyst logs in with a token,
// sees the quarantine that exfiltration-shaped queries raised, opens its page (its own address), sees the
// triggering query, the signals and the chart, releases it with a reason, and the session is answered again (a
// DNS query) and the audit entry is shown; a viewer (token from a #token= fragment, removed from the address bar)
// sees no decision buttons; the query log finds a name queried by a session that has ended.
// Screenshots of each view are written to a temporary folder, or to docs/screenshots/ with
// DNSWARDEN_SCREENSHOTS=docs (so a test run leaves the checkout as it was). Needs `npm run build` first (the console
// is built by esbuild into dist/console).
import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { SignJWT } from 'jose';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FIXTURE, startUpstream, type Upstream } from '../helpers/upstream.js';
import { query } from '../helpers/dns-client.js';
import { startWarden, TEST_SESSION, type Warden } from '../helpers/warden.js';
import { parseConfig } from '../../src/ops/config.js';
import { base32Label } from '../helpers/exfil.js';

const ROOT = resolve(import.meta.dirname, '../..');
const SHOTS = process.env['DNSWARDEN_SCREENSHOTS'] === 'docs' ? join(ROOT, 'docs/screenshots') : mkdtempSync(join(tmpdir(), 'dnswarden-screenshots-'));
const ANALYST_TOKEN = 'console-analyst-alice-0123456789abcdef';
const VIEWER_TOKEN = 'console-viewer-victor-0123456789abcdef';
const HS_SECRET = 'console-test-hs256-secret-0123456789abcdef';
const BATCH = { id: 'build-agent-7', addresses: ['127.0.0.2/32'], type: 'batch', user: 'ci-bot', role: 'builder' } as const;

let upstream: Upstream;
let warden: Warden;
let browser: Browser;
let quarantineId: string;
let openId: string | undefined;

async function newPage(): Promise<{ context: BrowserContext; page: Page; cspViolations: string[]; consoleErrors: string[] }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const cspViolations: string[] = [];
  const consoleErrors: string[] = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    else if (m.type() === 'error') consoleErrors.push(m.text());
  });
  return { context, page, cspViolations, consoleErrors };
}

/** Works at 1280 px: nothing wider than the viewport (no horizontal scrolling). */
const fitsWidth = (page: Page): Promise<boolean> => page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);

async function login(page: Page, token: string): Promise<void> {
  await page.goto(`${warden.adminUrl}/ui/`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('button', { name: 'Sign out' }).waitFor({ timeout: 15_000 });
}

beforeAll(async () => {
  upstream = await startUpstream();
  warden = await startWarden({
    admin: { tokens: [{ name: 'alice', kind: 'analyst', token: ANALYST_TOKEN }, { name: 'victor', kind: 'viewer', token: VIEWER_TOKEN }] },
    sessions: {
      static: [{ ...TEST_SESSION, addresses: [...TEST_SESSION.addresses] }, { ...BATCH, addresses: [...BATCH.addresses] }],
      signing_keys: [{ kid: 'console-hs', alg: 'HS256', secret: HS_SECRET }],
    },
  }, { upstream });
  // launch() gives the browser a fresh user-data-dir of its own (it refuses --user-data-dir) and removes it at close.
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
    timeout: 30_000,
  });
  mkdirSync(SHOTS, { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await warden?.close();
  await upstream?.stop();
});

describe('the console shell', () => {
  it('is served for every /ui/ path with a strict CSP, holds no data, and shows only the login form without a token', async () => {
    const res = await fetch(`${warden.adminUrl}/ui/quarantines/qr-anything`);
    expect(res.status).toBe(200);
    const csp = res.headers.get('content-security-policy') ?? '';
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(csp).not.toContain('unsafe-eval');
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
    const shell = await res.text();
    expect(shell).not.toMatch(/<script>|<script [^>]*>[^<]/); // no inline script
    expect(shell).not.toContain('qr-');
    const asset = await fetch(`${warden.adminUrl}/ui/assets/app.js`);
    expect(asset.status).toBe(200);
    expect(asset.headers.get('content-type')).toMatch(/javascript/);
    expect((await fetch(`${warden.adminUrl}/ui/assets/../../v1/audit`)).status).not.toBe(200);
    expect((await fetch(`${warden.adminUrl}/ui/assets/nope.js`)).status).toBe(404);

    const { context, page, cspViolations } = await newPage();
    const apiCalls: string[] = [];
    page.on('request', (r) => { if (new URL(r.url()).pathname.startsWith('/v1/')) apiCalls.push(r.url()); });
    await page.goto(`${warden.adminUrl}/ui/`);
    await expect.poll(() => page.getByLabel('API token').isVisible(), { timeout: 15_000 }).toBe(true);
    expect(await page.getByRole('button', { name: 'Sign in' }).isVisible()).toBe(true);
    expect(await page.locator('table').count()).toBe(0);
    expect(apiCalls).toEqual([]); // without a token the page asks the API nothing
    // A wrong token is refused and not kept (signed in from the keyboard: the field has focus, Enter submits).
    await page.getByLabel('API token').focus();
    await page.keyboard.type('not-a-real-token-0123456789');
    await page.keyboard.press('Enter');
    await page.getByText('That token was not accepted.').waitFor({ timeout: 15_000 });
    expect(await page.evaluate(() => sessionStorage.getItem('dnswarden.token'))).toBeNull();
    await page.screenshot({ path: join(SHOTS, 'login.png') });
    expect(await fitsWidth(page)).toBe(true);
    expect(cspViolations).toEqual([]);
    await context.close();
  });
});

describe('a quarantine raised by real DNS traffic, seen, understood and released in the browser', () => {
  let page: Page;
  let context: BrowserContext;
  let cspViolations: string[];
  let consoleErrors: string[];

  beforeAll(async () => {
    // Ordinary lookups first (they are the chart's answered points), then exfiltration-shaped TXT queries.
    for (const name of [FIXTURE.a.name, FIXTURE.a.name]) expect((await query({ server: warden.dns, bind: '127.0.0.2', name, type: 'A' })).rcode).toBe('NOERROR');
    for (let i = 0; i < 8 && quarantineId === undefined; i++) {
      const reply = await query({ server: warden.dns, bind: '127.0.0.2', name: `${base32Label(`console-${i}`)}.exfil-console.test`, type: 'TXT' });
      const m = /^session quarantined \((qr-[^)]+)\)/.exec(reply.ede?.text ?? '');
      if (m !== null) quarantineId = m[1]!;
    }
    expect(quarantineId).toBeDefined();
    expect((await query({ server: warden.dns, bind: '127.0.0.2', name: FIXTURE.a.name, type: 'A' })).rcode).toBe('NXDOMAIN'); // held
    ({ page, context, cspViolations, consoleErrors } = await newPage());
  });
  afterAll(async () => {
    await context?.close();
  });

  it('logs in with an analyst token kept in sessionStorage only, and the queue shows the open quarantine first', async () => {
    await login(page, ANALYST_TOKEN);
    expect(await page.evaluate(() => sessionStorage.getItem('dnswarden.token'))).toBe(ANALYST_TOKEN);
    expect(await context.cookies()).toEqual([]);
    expect(page.url()).not.toContain(ANALYST_TOKEN);
    const row = page.locator('table.queue tbody tr').first();
    await row.getByRole('link', { name: quarantineId }).waitFor({ timeout: 15_000 });
    const text = await row.innerText();
    expect(text).toContain(BATCH.id);
    expect(text).toContain(BATCH.user);
    expect(text).toContain(BATCH.role);
    expect(text).toContain('batch');
    expect(text).toContain('open');
    expect(text).toContain('exfil-console.test'); // the domain
    expect(text).toMatch(/name_length|label_entropy|char_class/); // top signals
    expect(await page.getByText('1 open').isVisible()).toBe(true);
    await page.screenshot({ path: join(SHOTS, 'queue.png'), fullPage: true });
    expect(await fitsWidth(page)).toBe(true);
  });

  it('filters the queue by user and session type without a reload', async () => {
    await page.getByLabel('User').fill('nobody-else');
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.getByText('No quarantines match.').waitFor({ timeout: 15_000 });
    await page.getByLabel('User').fill(BATCH.user);
    await page.getByRole('button', { name: 'Apply' }).click();
    await page.getByRole('link', { name: quarantineId }).waitFor({ timeout: 15_000 });
    await page.getByLabel('Session type').selectOption('interactive');
    await page.getByText('No quarantines match.').waitFor({ timeout: 15_000 });
    await page.getByLabel('Session type').selectOption('batch');
    await page.getByRole('link', { name: quarantineId }).waitFor({ timeout: 15_000 });
  });

  it('opens the quarantine at its own address: the session, the trigger with every signal, the chart, the queries', async () => {
    await page.getByRole('link', { name: quarantineId }).click();
    await page.waitForURL(`${warden.adminUrl}/ui/quarantines/${quarantineId}`);
    await page.getByRole('heading', { name: `Quarantine ${quarantineId}` }).waitFor({ timeout: 15_000 });
    const detail = (await warden.admin(`/v1/quarantines/${quarantineId}`)).json as { quarantine: { evidence: { trigger: { name: string; signals: { id: string }[] } } }; block_at: number };
    const trigger = detail.quarantine.evidence.trigger;
    expect(await page.locator('#trigger-name').innerText()).toBe(trigger.name);
    const signals = await page.locator('table.signals tbody tr').allInnerTexts();
    expect(signals.length).toBe(trigger.signals.length);
    for (const s of trigger.signals) expect(signals.some((r) => r.startsWith(s.id))).toBe(true);
    // uPlot drew the timeline on a canvas, with the threshold in its legend and answered + blocked points.
    await page.locator('.chart canvas').first().waitFor({ timeout: 15_000 });
    expect(await page.locator('.chart .u-legend').innerText()).toContain(`threshold (${detail.block_at})`);
    const caption = await page.locator('.timeline figcaption').innerText();
    expect(caption).toMatch(/[1-9]\d* answered/);
    expect(caption).toMatch(/[1-9]\d* blocked/);
    const before = await page.locator('section[aria-labelledby="before-title"] tbody').innerText();
    expect(before).toContain(FIXTURE.a.name);
    expect(before).toContain(trigger.name);
    expect(await page.getByRole('button', { name: 'Release' }).isVisible()).toBe(true);
    expect(await page.getByRole('button', { name: 'Confirm' }).isVisible()).toBe(true);
    await page.screenshot({ path: join(SHOTS, 'quarantine.png'), fullPage: true });
    expect(await fitsWidth(page)).toBe(true);
    // Bookmarkable: a fresh load of the address shows the same page (the token is still in this tab).
    await page.reload();
    await page.locator('#trigger-name').waitFor({ timeout: 15_000 });
  });

  it('a release needs a reason; with one, the session is answered again and the audit entry is shown', async () => {
    await page.getByRole('button', { name: 'Release' }).click();
    await page.getByText('A reason is required').waitFor({ timeout: 15_000 });
    expect((await query({ server: warden.dns, bind: '127.0.0.2', name: FIXTURE.a.name, type: 'A' })).rcode).toBe('NXDOMAIN'); // still held
    // From the keyboard: the reason field, then Tab to Release and Enter.
    await page.getByLabel('Reason').focus();
    await page.keyboard.type('false positive: package mirror hashes');
    await page.keyboard.press('Tab');
    if (await page.getByRole('checkbox', { name: 'exfil-console.test' }).count() > 0) await page.keyboard.press('Tab'); // past the deny choice
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Release');
    await page.keyboard.press('Enter');
    await page.getByRole('status').filter({ hasText: `Quarantine ${quarantineId} is now released` }).waitFor({ timeout: 15_000 });
    const reply = await query({ server: warden.dns, bind: '127.0.0.2', name: FIXTURE.a.name, type: 'A' });
    expect(reply.rcode).toBe('NOERROR');
    expect(reply.answers.map((a) => a.data)).toEqual([FIXTURE.a.address]);
    const audit = page.locator('section[aria-labelledby="audit-title"] tbody tr');
    await audit.first().waitFor({ timeout: 15_000 });
    const row = await audit.first().innerText();
    expect(row).toContain('alice');
    expect(row).toContain('quarantine.release');
    expect(row).toContain('false positive: package mirror hashes');
    expect(await page.getByRole('button', { name: 'Release' }).count()).toBe(0); // released: nothing left to decide
    expect((await warden.admin('/v1/audit')).json).toMatchObject({ audit: [{ actor: 'alice', action: 'quarantine.release', target: quarantineId }] });
    expect(cspViolations).toEqual([]);
    expect(consoleErrors).toEqual([]);
  });
});

describe('a viewer, then an analyst confirming', () => {
  it('signs in with a #token= fragment that leaves the address bar, and sees no decision buttons (the API refuses them anyway)', async () => {
    // a second quarantine to look at, still open
    for (let i = 0; i < 8 && openId === undefined; i++) {
      const reply = await query({ server: warden.dns, bind: '127.0.0.2', name: `${base32Label(`viewer-${i}`)}.exfil-viewer.test`, type: 'TXT' });
      openId = /^session quarantined \((qr-[^)]+)\)/.exec(reply.ede?.text ?? '')?.[1];
    }
    expect(openId).toBeDefined();
    const { context, page, cspViolations } = await newPage();
    await page.goto(`${warden.adminUrl}/ui/quarantines/${openId}#token=${VIEWER_TOKEN}`);
    await page.locator('#trigger-name').waitFor({ timeout: 15_000 });
    expect(page.url()).toBe(`${warden.adminUrl}/ui/quarantines/${openId}`);
    expect(await page.evaluate(() => location.hash)).toBe('');
    expect(await page.evaluate(() => sessionStorage.getItem('dnswarden.token'))).toBe(VIEWER_TOKEN);
    expect(await page.locator('header .who').innerText()).toContain('victor');
    expect(await page.getByRole('button', { name: 'Release' }).count()).toBe(0);
    expect(await page.getByRole('button', { name: 'Confirm' }).count()).toBe(0);
    expect(await page.getByLabel('Reason').count()).toBe(0);
    const refused = await page.evaluate(async (id) => {
      const r = await fetch(`/v1/quarantines/${id}/release`, { method: 'POST', headers: { authorization: `Bearer ${sessionStorage.getItem('dnswarden.token')}`, 'content-type': 'application/json' }, body: '{"reason":"x"}' });
      return r.status;
    }, openId!);
    expect(refused).toBe(403);
    expect(cspViolations).toEqual([]);
    await context.close();
  });

  it('an analyst confirms it in the browser, denying the one domain ticked: confirmed, denied for everyone, audited', async () => {
    const { context, page, cspViolations, consoleErrors } = await newPage();
    await login(page, ANALYST_TOKEN);
    await page.goto(`${warden.adminUrl}/ui/quarantines/${openId}`);
    await page.locator('#trigger-name').waitFor({ timeout: 15_000 });
    await page.getByLabel('Reason').fill('confirmed: TXT tunnel to exfil-viewer.test');
    await page.getByRole('checkbox', { name: 'exfil-viewer.test' }).check();
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.getByRole('status').filter({ hasText: `Quarantine ${openId} is now confirmed; denied for everyone: exfil-viewer.test` }).waitFor({ timeout: 15_000 });
    await expect.poll(async () => (await page.locator('section[aria-labelledby="audit-title"] tbody').innerText()), { timeout: 15_000 }).toContain('quarantine.confirm');
    const audit = await page.locator('section[aria-labelledby="audit-title"] tbody').innerText();
    expect(audit).toContain('alice');
    expect(audit).toContain('confirmed: TXT tunnel to exfil-viewer.test');
    expect(await page.getByRole('button', { name: 'Confirm' }).count()).toBe(0); // confirmed: only release is left
    expect(await page.getByRole('button', { name: 'Release' }).isVisible()).toBe(true);
    // Denied for everyone: another session's query to the domain is blocked as learned deny (EDE 17).
    const other = await query({ server: warden.dns, bind: '127.0.0.1', name: 'www.exfil-viewer.test', type: 'A' });
    expect(other.rcode).toBe('NXDOMAIN');
    expect(other.ede?.code).toBe(17);
    expect(cspViolations).toEqual([]);
    expect(consoleErrors).toEqual([]);
    await context.close();
    // leave nothing held for the next test
    expect((await warden.admin(`/v1/quarantines/${openId}/release`, { method: 'POST', body: { reason: 'test cleanup' } })).status).toBe(200);
  });
});

describe('a token the server stops accepting', () => {
  it('sends the page back to the login form at its next API call, and forgets the token', async () => {
    const { context, page } = await newPage();
    await page.goto(`${warden.adminUrl}/ui/#token=${VIEWER_TOKEN}`);
    await page.getByRole('button', { name: 'Sign out' }).waitFor({ timeout: 15_000 });
    // The viewer token is revoked (the config reloaded without it, as SIGHUP does).
    await warden.app.reload(parseConfig({ ...warden.config, admin: { ...(warden.config['admin'] as object), tokens: [{ name: 'alice', kind: 'analyst', token: ANALYST_TOKEN }] } }));
    // Its next API call: the click on Sessions, or the page's own refresh if that comes first (the overview polls; then
    // the page is back at the login form before the click lands, and the link is gone — the same outcome).
    await page.getByRole('link', { name: 'Sessions' }).click({ timeout: 5_000 }).catch(() => undefined);
    await page.getByText('The server no longer accepts this token. Sign in again.').waitFor({ timeout: 15_000 });
    expect(await page.getByLabel('API token').isVisible()).toBe(true);
    expect(await page.locator('table').count()).toBe(0);
    expect(await page.evaluate(() => sessionStorage.getItem('dnswarden.token'))).toBeNull();
    await context.close();
  });
});

describe('the query log', () => {
  it('finds a name queried by a session that has ended, by name suffix, and exports it', async () => {
    const jwt = await new SignJWT({ sid: 'ephemeral-agent', user: 'eve', role: 'scraper', session_type: 'interactive', addresses: ['127.0.0.3/32'], exp: Math.floor(Date.now() / 1000) + 600 })
      .setProtectedHeader({ alg: 'HS256', kid: 'console-hs' })
      .sign(new TextEncoder().encode(HS_SECRET));
    expect((await warden.admin('/v1/sessions', { method: 'POST', body: { token: jwt } })).status).toBe(201);
    expect((await query({ server: warden.dns, bind: '127.0.0.3', name: FIXTURE.a.name, type: 'A' })).rcode).toBe('NOERROR');
    expect((await warden.admin('/v1/sessions/ephemeral-agent', { method: 'DELETE' })).status).toBe(204);
    expect((await query({ server: warden.dns, bind: '127.0.0.3', name: FIXTURE.a.name, type: 'A' })).rcode).toBe('REFUSED'); // ended

    const suffix = FIXTURE.a.name.split('.').slice(1).join('.'); // a parent of the name: a suffix search
    const { context, page, cspViolations, consoleErrors } = await newPage();
    await login(page, ANALYST_TOKEN);
    await page.getByRole('link', { name: 'Query log' }).click();
    await page.getByLabel('Name (suffix)').fill(suffix);
    await page.getByLabel('User').fill('eve');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('status').filter({ hasText: '1 query found' }).waitFor({ timeout: 15_000 });
    const row = await page.locator('table.querylog tbody tr').first().innerText();
    expect(row).toContain('ephemeral-agent');
    expect(row).toContain('eve');
    expect(row).toContain(FIXTURE.a.name);
    expect(row).toContain('answered');
    expect(page.url()).toContain(`/ui/queries?name=${encodeURIComponent(suffix)}`); // a bookmarkable search
    const [download] = await Promise.all([page.waitForEvent('download', { timeout: 15_000 }), page.getByRole('button', { name: 'Export CSV' }).click()]);
    const csvPath = await download.path();
    const csv = readFileSync(csvPath, 'utf8').trim().split('\r\n');
    expect(csv[0]).toBe('time,name,qtype,session,user,role,session_type,result,action,rule,rcode,score,count,last_time');
    expect(csv).toHaveLength(2);
    expect(csv[1]).toContain(`,${FIXTURE.a.name},1,ephemeral-agent,eve,scraper,interactive,answered,answer,`);
    // The blocked exfiltration queries of the quarantined session are there too, by verdict.
    await page.getByLabel('Name (suffix)').fill('exfil-console.test');
    await page.getByLabel('User').fill('');
    await page.getByLabel('Verdict').selectOption('blocked');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.locator('table.querylog tbody tr').first().waitFor({ timeout: 15_000 });
    const blocked = await page.locator('table.querylog tbody tr').allInnerTexts();
    expect(blocked.length).toBeGreaterThanOrEqual(2);
    for (const r of blocked) expect(r).toContain(BATCH.id);
    await page.screenshot({ path: join(SHOTS, 'query-log.png'), fullPage: true });
    expect(await fitsWidth(page)).toBe(true);

    await page.getByRole('link', { name: 'Sessions' }).click();
    await page.locator('table.sessions tbody tr').first().waitFor({ timeout: 15_000 });
    const sessions = await page.locator('table.sessions tbody').innerText();
    expect(sessions).toContain(BATCH.id);
    expect(sessions).not.toContain('ephemeral-agent');
    await page.screenshot({ path: join(SHOTS, 'sessions.png'), fullPage: true });
    expect(await fitsWidth(page)).toBe(true);

    // The overview: the last hour's traffic, its blocks and quarantines, and the most blocked domains.
    await page.getByRole('link', { name: 'Overview' }).click();
    await page.locator('table.top-blocked tbody tr').first().waitFor({ timeout: 15_000 });
    const top = await page.locator('table.top-blocked tbody').innerText();
    expect(top).toContain('exfil-console.test');
    expect(top).toContain('exfil-viewer.test');
    const tiles = await page.locator('.tiles').innerText();
    expect(tiles).toMatch(/\n2\s*\n?\s*quarantines raised/i);
    await page.locator('.chart canvas').first().waitFor({ timeout: 15_000 });
    await page.screenshot({ path: join(SHOTS, 'overview.png'), fullPage: true });
    expect(await fitsWidth(page)).toBe(true);
    expect(cspViolations).toEqual([]);
    expect(consoleErrors).toEqual([]);
    await context.close();
  });
});
