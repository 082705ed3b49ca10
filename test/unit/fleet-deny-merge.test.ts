// DenyMerge (src/fleet/replica.ts): the learned deny list's rule per entry on a replica — the later add or removal
// of a domain wins, an add wins a tie, a removal remembered here stops an older add read later — and a catch-up
// that skips what is still queued here, reads the list into the policy once, and names what to write back.
import { describe, expect, it } from 'vitest';
import { DenyMerge, type Replica } from '../../src/fleet/replica.js';
import type { LearnedDenyEntry } from '../../src/fleet/shared-record.js';

function fakeReplica(): { replica: Replica; list: Map<string, LearnedDenyEntry>; reads: () => number } {
  const list = new Map<string, LearnedDenyEntry>();
  let reads = 0;
  const none = (): never => { throw new Error('not used here'); };
  const replica: Replica = {
    putSession: none, dropSession: none, replayed: none, quarantine: none, gate: none, audit: none, held: none, registered: none,
    denyPut: (e) => void list.set(e.domain, e),
    denyDrop: (domain) => void list.delete(domain),
    denyChanged: () => void reads++,
    denyEntry: (domain) => list.get(domain),
    learnedDeny: () => [...list.values()],
  };
  return { replica, list, reads: () => reads };
}

const entry = (domain: string, addedAtMs: number, addedBy = 'a'): LearnedDenyEntry => ({ domain, addedAtMs, addedBy, quarantineId: null, reason: 'r' });

describe('DenyMerge', () => {
  it('applies the later change of a domain; an add wins a tie; an entry held as is changes nothing', () => {
    const { replica, list } = fakeReplica();
    const m = new DenyMerge(replica);
    expect(m.put(entry('x.test', 100))).toBe(true);
    expect(m.put(entry('x.test', 100))).toBe(false); // the same entry again
    expect(m.put(entry('x.test', 90))).toBe(false); // older
    expect(m.drop('x.test', 100)).toBe(false); // a tie: the add stays
    expect(list.has('x.test')).toBe(true);
    expect(m.drop('x.test', 101)).toBe(true);
    expect(list.has('x.test')).toBe(false);
    expect(m.put(entry('x.test', 100, 'late'))).toBe(false); // older than the removal remembered here
    expect(m.put(entry('x.test', 101))).toBe(true); // added again at the removal's instant
    // A removal of an entry not held here is remembered all the same, for a minute.
    expect(m.drop('z.test', 200)).toBe(false);
    expect(m.put(entry('z.test', 150))).toBe(false);
    m.prune(200 + 61_000);
    expect(m.put(entry('z.test', 150))).toBe(true);
  });

  it('a catch-up applies the record except what is queued here, reads the list once, and names what the record never had', () => {
    const { replica, list, reads } = fakeReplica();
    const m = new DenyMerge(replica);
    list.set('local-only.test', entry('local-only.test', 1));
    list.set('removed.test', entry('removed.test', 10));
    list.set('queued.test', entry('queued.test', 50));
    const record: Record<string, string> = { 'removed.test': JSON.stringify({ domain: 'removed.test', removedAtMs: 20 }), 'queued.test': JSON.stringify({ domain: 'queued.test', removedAtMs: 40 }) };
    for (let i = 0; i < 1000; i++) record[`r${i}.test`] = JSON.stringify(entry(`r${i}.test`, i));
    const unknown = m.catchUp(record, [{ kind: 'deny.put', entry: entry('queued.test', 50) }]);
    expect(reads()).toBe(1);
    expect(unknown.map((e) => e.domain)).toEqual(['local-only.test']);
    expect(list.has('removed.test')).toBe(false);
    expect(list.has('queued.test')).toBe(true); // queued here: newer than the record's tombstone
    expect(list.size).toBe(1002);
    // The same record again changes nothing: the policy is not re-read.
    m.catchUp(record, []);
    expect(reads()).toBe(1);
  });
});
