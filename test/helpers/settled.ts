// Waiting for a counter to stop moving: a process test that cannot know when the last packet has arrived reads a
// count until it has not changed for a while. Bounded: it never waits past `limitMs`.

export interface SettleOptions {
  /** The count is taken as final once it has not changed for this long. */
  readonly quietMs: number;
  /** The whole wait's bound. */
  readonly limitMs: number;
  /** Stop at once when the count reaches this (everything expected has arrived). */
  readonly reach?: number;
  /** How often `read()` is polled (ms). */
  readonly everyMs?: number;
}

/** Polls `read()` until it reaches `reach`, or has not changed for `quietMs`, or `limitMs` has passed; its last value. */
export async function settled(read: () => number, o: SettleOptions): Promise<number> {
  const deadline = Date.now() + o.limitMs;
  let last = read();
  let since = Date.now();
  while (Date.now() < deadline) {
    await new Promise((ok) => setTimeout(ok, o.everyMs ?? 100));
    const now = read();
    if (o.reach !== undefined && now >= o.reach) return now;
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= o.quietMs) {
      return now;
    }
  }
  return read();
}
