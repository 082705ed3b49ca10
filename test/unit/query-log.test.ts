// The query log's own logic over a real SQLite file: suffix search on whole labels, the filters, the bounds
// (max_rows, max_age_days, the buffer), CSV that a spreadsheet cannot run, and nothing found before a flush lost.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { afterEach, describe, expect, it } from 'vitest';
import { QueryLog, queryLogCsv, reversedName } from '../../src/analyst/query-log.js';

const require = createRequire(import.meta.url);
const A = { id: 's-a', user: 'alice', role: 'dev', type: 'interactive' };
const B = { id: 's-b', user: 'bob', role: 'ci', type: 'batch' };
const dirs: string[] = [];
const logs: QueryLog[] = [];
function open(maxRows = 1000, maxAgeDays = 30, maxBuffered?: number): QueryLog {
  const dir = mkdtempSync(join(tmpdir(), 'dnswarden-qlog-'));
  dirs.push(dir);
  const q = QueryLog.open(dir, { maxRows, maxAgeDays, ...(maxBuffered !== undefined ? { maxBuffered } : {}) });
  logs.push(q);
  return q;
}
afterEach(async () => {
  for (const l of logs.splice(0)) await l.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('query log', () => {
  it('reverses names label by label', () => {
    expect(reversedName('a.Example.COM.')).toBe('com.example.a');
  });

  it('finds a name and every name under it, never a name that merely ends with the same letters', async () => {
    const q = open();
    const t = Date.now();
    q.record(t, 'example.com', 1, A, 'answered', 'answer', 'none', 0, 0.1);
    q.record(t + 1, 'x.y.example.com', 16, B, 'blocked', 'nxdomain', 'threshold', 3, 0.9);
    q.record(t + 2, 'badexample.com', 1, A, 'answered', 'answer', 'none', 0, 0.2);
    q.record(t + 3, 'example.com.evil.net', 1, A, 'answered', 'answer', 'none', 0, 0.2);
    const names = (await q.search({ name: 'example.com' })).map((r) => r.name);
    expect(names).toEqual(['x.y.example.com', 'example.com']); // newest first
    expect((await q.search({ name: 'EXAMPLE.com.' })).length).toBe(2);
    expect((await q.search({ name: 'example.com', user: 'bob' })).map((r) => r.session)).toEqual(['s-b']);
    expect((await q.search({ verdict: 'blocked' })).map((r) => r.name)).toEqual(['x.y.example.com']);
    expect((await q.search({ verdict: 'threshold' })).map((r) => r.name)).toEqual(['x.y.example.com']);
    expect((await q.search({ session: 's-a', sinceMs: t + 2 })).map((r) => r.name)).toEqual(['example.com.evil.net', 'badexample.com']);
    expect((await q.search({ untilMs: t + 1 })).map((r) => r.name)).toEqual(['example.com']);
    expect((await q.search({ limit: 1 })).length).toBe(1);
    const row = (await q.search({ name: 'x.y.example.com' }))[0]!;
    expect(row).toMatchObject({ qtype: 16, user: 'bob', role: 'ci', sessionType: 'batch', result: 'blocked', action: 'nxdomain', rule: 'threshold', rcode: 3, score: 0.9 });
  });

  it('keeps only the newest max_rows and nothing older than max_age_days', async () => {
    const q = open(1000, 1);
    const now = Date.now();
    q.record(now - 2 * 86_400_000, 'old.example', 1, A, 'answered', 'answer', 'none', 0, undefined);
    for (let i = 0; i < 1500; i++) q.record(now + i, `n${i}.example`, 1, A, 'answered', 'answer', 'none', 0, undefined);
    expect(await q.flush(now)).toBe(1501);
    expect(q.count()).toBe(1000);
    expect((await q.search({ name: 'old.example' }))).toEqual([]);
    expect((await q.search({ name: 'n499.example' }))).toEqual([]);
    expect((await q.search({ name: 'n500.example' })).length).toBe(1);
    expect(q.written).toBe(1501);
  });

  it('counts a repeat of a session\'s query on its row within a batch (a flood is one row), and nothing else', async () => {
    const q = open();
    const t = 1_000_000;
    for (let i = 0; i < 500; i++) q.record(t + i, 'hot.example', 1, A, 'answered', 'answer', 'none', 0, undefined);
    q.record(t + 600, 'hot.example', 28, A, 'answered', 'answer', 'none', 0, undefined); // another type: a row
    q.record(t + 601, 'hot.example', 1, B, 'answered', 'answer', 'none', 0, undefined); // another session: a row
    q.record(t + 602, 'hot.example', 1, A, 'blocked', 'nxdomain', 'quarantined', 3, undefined); // another result: a row
    q.record(t + 603, 'hot.example', 1, A, 'blocked', 'nxdomain', 'quarantined', 3, undefined);
    expect(await q.flush(t + 1000)).toBe(4);
    q.record(t + 2000, 'hot.example', 1, A, 'blocked', 'nxdomain', 'quarantined', 3, undefined); // a new batch: a new row
    await q.flush(t + 3000);
    expect(q.queriesWritten).toBe(505);
    const rows = (await q.search({ name: 'hot.example', session: 's-a' }));
    expect(rows.map((r) => [r.qtype, r.result, r.count, r.atMs - t, r.lastAtMs - t])).toEqual([
      [1, 'blocked', 1, 2000, 2000], [1, 'blocked', 2, 602, 603], [28, 'answered', 1, 600, 600], [1, 'answered', 500, 0, 499],
    ]);
    const o = await q.overview(0);
    expect(o.minutes.reduce((n, m) => n + m.queries, 0)).toBe(505);
    expect(o.minutes.reduce((n, m) => n + m.blocked, 0)).toBe(3);
    expect(o.blockedNames).toEqual([{ name: 'hot.example', count: 3 }]);
  });

  it('a row keeps the highest score of its repeats (none until one comes), through the writer thread and without it', async () => {
    for (const thread of [false, true]) {
      const dir = mkdtempSync(join(tmpdir(), 'dnswarden-qlog-'));
      dirs.push(dir);
      const q = QueryLog.open(dir, { maxRows: 1000, maxAgeDays: 30, thread });
      logs.push(q);
      const t = Date.now();
      q.record(t, 'unscored.example', 1, A, 'answered', 'answer', 'none', 0, undefined);
      q.record(t, 'late.example', 1, A, 'answered', 'answer', 'none', 0, undefined);
      q.record(t + 1, 'late.example', 1, A, 'answered', 'answer', 'none', 0, 0.25);
      q.record(t + 2, 'late.example', 1, A, 'answered', 'answer', 'none', 0, undefined);
      q.record(t, 'max.example', 1, B, 'blocked', 'nxdomain', 'threshold', 3, 0.5);
      q.record(t + 1, 'max.example', 1, B, 'blocked', 'nxdomain', 'threshold', 3, 0.9);
      q.record(t + 2, 'max.example', 1, B, 'blocked', 'nxdomain', 'threshold', 3, 0.7);
      q.record(t, 'zero.example', 1, B, 'answered', 'answer', 'none', 0, 0);
      expect(await q.flush(t)).toBe(4);
      const rows = new Map((await q.search({})).map((r) => [r.name, r]));
      expect([...rows.keys()].sort()).toEqual(['late.example', 'max.example', 'unscored.example', 'zero.example']);
      expect(rows.get('unscored.example')!.score).toBeNull();
      expect([rows.get('late.example')!.score, rows.get('late.example')!.count]).toEqual([0.25, 3]);
      expect([rows.get('max.example')!.score, rows.get('max.example')!.count, rows.get('max.example')!.user]).toEqual([0.9, 3, 'bob']);
      expect(rows.get('zero.example')!.score).toBe(0);
    }
  });

  it('the timer writes a large batch in slices, yielding to the event loop between them, and loses no row', async () => {
    const q = open(100_000);
    const t = Date.now();
    for (let i = 0; i < 9000; i++) q.record(t + i, `u${i}.flood.example`, 1, A, 'answered', 'answer', 'none', 0, undefined);
    let ranBetween = false;
    let writtenWhenYielded = -1;
    setImmediate(() => { ranBetween = true; writtenWhenYielded = q.written; });
    const written = await new Promise<number>((ok) => q.flushInSlices(t, ok));
    expect(written).toBe(9000);
    expect(ranBetween).toBe(true);
    expect(writtenWhenYielded).toBeGreaterThan(0); // the loop ran after the first slice …
    expect(writtenWhenYielded).toBeLessThan(9000); // … and before the last
    expect(q.count()).toBe(9000);
    // Rows recorded while the slices are under way are written too (by the next flush).
    q.record(t, 'late.example', 1, A, 'answered', 'answer', 'none', 0, undefined);
    expect((await q.search({ name: 'late.example' })).length).toBe(1);
  });

  it('with a writer thread (as the product runs it): the same rows, the same bounds, on disk before flush resolves', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dnswarden-qlog-'));
    dirs.push(dir);
    const q = QueryLog.open(dir, { maxRows: 1000, maxAgeDays: 1, thread: true });
    logs.push(q);
    const now = Date.now();
    q.record(now - 2 * 86_400_000, 'old.example', 1, A, 'answered', 'answer', 'none', 0, undefined);
    for (let i = 0; i < 4500; i++) q.record(now + i, `w${i}.thread.example`, 1, B, 'blocked', 'nxdomain', 'threshold', 3, 0.9);
    for (let i = 0; i < 300; i++) q.record(now, 'hot.thread.example', 1, B, 'blocked', 'nxdomain', 'threshold', 3, 0.9); // repeats: one row
    const written = await new Promise<number>((ok) => q.flushInSlices(now, ok));
    expect(written).toBe(4502);
    expect(q.queriesWritten).toBe(4801);
    expect(q.count()).toBe(1000); // the newest 1000; the old row went by age
    expect(await q.search({ name: 'old.example' })).toEqual([]);
    expect((await q.search({ name: 'hot.thread.example' })).map((r) => r.count)).toEqual([300]);
    q.record(now, 'after.example', 1, A, 'answered', 'answer', 'none', 0, undefined);
    expect((await q.search({ name: 'after.example' })).map((r) => r.user)).toEqual(['alice']); // flush resolves once written
  });

  it('drops and counts rows beyond the buffer, never blocks', async () => {
    const q = open(1000, 30, 10);
    for (let i = 0; i < 25; i++) q.record(Date.now(), `d${i}.example`, 1, A, 'answered', 'answer', 'none', 0, undefined);
    expect(q.dropped).toBe(15);
    expect(await q.flush()).toBe(10);
  });

  it('with a writer thread, close writes the last rows before it returns', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dnswarden-qlog-'));
    dirs.push(dir);
    const first = QueryLog.open(dir, { maxRows: 1000, maxAgeDays: 30, thread: true });
    for (let i = 0; i < 50; i++) first.record(Date.now(), `last${i}.example`, 1, B, 'answered', 'answer', 'none', 0, undefined);
    await first.close();
    const again = QueryLog.open(dir, { maxRows: 1000, maxAgeDays: 30 });
    logs.push(again);
    expect(again.count()).toBe(50);
  });

  it('survives close and reopen (rows are on disk)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dnswarden-qlog-'));
    dirs.push(dir);
    const first = QueryLog.open(dir, { maxRows: 1000, maxAgeDays: 30 });
    first.record(Date.now(), 'kept.example', 1, B, 'answered', 'answer', 'none', 0, undefined);
    await first.close(); // flushes
    const again = QueryLog.open(dir, { maxRows: 1000, maxAgeDays: 30 });
    logs.push(again);
    expect((await again.search({ name: 'kept.example' })).map((r) => r.user)).toEqual(['bob']);
  });

  it('writes CSV with a header, quoting, and formula cells defused', () => {
    const rows = [{ atMs: 0, name: 'a,b.example', qtype: 1, session: '=cmd()', user: 'u"x', role: 'r', sessionType: 'batch', result: 'answered', action: 'answer', rule: 'none', rcode: 0, score: null, count: 1, lastAtMs: 0 }];
    const csv = queryLogCsv(rows);
    const lines = csv.trim().split('\r\n');
    expect(lines[0]).toBe('time,name,qtype,session,user,role,session_type,result,action,rule,rcode,score,count,last_time');
    expect(lines[1]).toBe(`1970-01-01T00:00:00.000Z,"a,b.example",1,'=cmd(),"u""x",r,batch,answered,answer,none,0,,1,1970-01-01T00:00:00.000Z`);
  });
});

describe('query log opened while another process holds its file', () => {
  // server.workers > 1: every worker opens the file at the same moment, and one may hold it for longer than
  // SQLite's busy_timeout (2 s) on a loaded machine; the worker then failed to start (`database is locked`).
  it('waits for the file (within its bound) instead of failing the start', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dnswarden-qlog-busy-'));
    dirs.push(dir);
    const file = join(dir, 'querylog.sqlite');
    const holder = spawn(process.execPath, ['-e', `
      const Database = require(${JSON.stringify(require.resolve('better-sqlite3'))});
      const db = new Database(${JSON.stringify(file)});
      db.exec('CREATE TABLE held (a)');
      db.exec('BEGIN EXCLUSIVE');
      db.exec('INSERT INTO held VALUES (1)');
      process.stdout.write('locked\\n');
      setTimeout(() => { db.exec('COMMIT'); db.close(); }, 2500);
      setTimeout(() => process.exit(0), 2600);
    `], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((ok, fail) => {
        holder.stdout.on('data', (d: Buffer) => { if (d.toString().includes('locked')) ok(); });
        holder.on('exit', (code) => fail(new Error(`lock holder exited early (${code})`)));
      });
      const t0 = Date.now();
      const q = QueryLog.open(dir, { maxRows: 100, maxAgeDays: 1 });
      logs.push(q);
      expect(Date.now() - t0).toBeGreaterThanOrEqual(2000); // it did wait past one busy_timeout
      q.record(Date.now(), 'www.example.com', 1, A, 'answered', 'answer', 'none', 0, undefined);
      await q.flush();
      expect((await q.search({ name: 'example.com' })).map((r) => r.name)).toEqual(['www.example.com']);
    } finally {
      holder.kill();
    }
  }, 15_000);
});
