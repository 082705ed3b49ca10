// A Prometheus histogram for the per-query tuning distributions (one observation per signal per
// scored query, ~10 per query): counts live in a typed array and are formatted only when /metrics
// is scraped. prom-client's Histogram costs ~0.2 µs per observe, which `npm run bench` showed as
// the largest scoring-on cost on cache hits. Registered in the app's prom-client Registry.
import type { Registry } from 'prom-client';

export class FastHistogram<K extends string> {
  readonly name: string;
  readonly help: string;
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  readonly #labelsOf: (key: K) => Record<string, string>;
  readonly #labels: Record<string, string>[] = []; // per slot, computed once
  readonly #bounds: readonly number[];
  readonly #keys: K[] = [];
  readonly #index = new Map<K, number>();
  #counts = new Float64Array(0); // per key: bounds.length bucket counts (not cumulative), then +Inf
  #sums = new Float64Array(0);

  /**
   * One label: `label` is its name and a key its value. Several: `labelsOf` turns a key (e.g. "a|b",
   * built once by the caller, not per observation) into its labels. `initialKeys`: series exported (all
   * buckets 0) before their first observation, so rate() sees the first one.
   */
  constructor(opts: { name: string; help: string; buckets: readonly number[]; registry: Registry; initialKeys?: readonly K[] } & ({ label: string } | { labelsOf: (key: K) => Record<string, string> })) {
    this.name = opts.name;
    this.help = opts.help;
    this.#labelsOf = 'labelsOf' in opts ? opts.labelsOf : (key) => ({ [opts.label]: key });
    this.#bounds = [...opts.buckets].sort((a, b) => a - b);
    for (const key of opts.initialKeys ?? []) this.#slot(key);
    opts.registry.registerMetric(this as never);
  }

  /** Exports `key`'s series (all zero) from now on, before its first observation. */
  declare(key: K): void {
    this.#slot(key);
  }

  #slot(key: K): number {
    let i = this.#index.get(key);
    if (i === undefined) {
      i = this.#keys.length;
      this.#keys.push(key);
      this.#index.set(key, i);
      this.#labels.push(this.#labelsOf(key));
      const width = this.#bounds.length + 1;
      const counts = new Float64Array(this.#keys.length * width);
      counts.set(this.#counts);
      this.#counts = counts;
      const sums = new Float64Array(this.#keys.length);
      sums.set(this.#sums);
      this.#sums = sums;
    }
    return i;
  }

  observe(key: K, value: number): void {
    this.observeAt(this.positionOf(key, value), value);
  }

  /**
   * Where an observation of `value` under `key` lands (its series and bucket): a caller that observes the same
   * values again and again (a reused verdict's score and signals) finds it once and then calls observeAt.
   */
  positionOf(key: K, value: number): number {
    const slot = this.#slot(key);
    const bounds = this.#bounds;
    let b = 0;
    while (b < bounds.length && value > bounds[b]!) b++;
    return slot * (bounds.length + 1) + b;
  }

  /** observe(key, value), at the position positionOf(key, value) gave. */
  observeAt(position: number, value: number): void {
    this.#counts[position]! += 1;
    this.#sums[(position / (this.#bounds.length + 1)) | 0]! += value;
  }

  /** The shape prom-client's Registry formats (name, help, type, values with metricName/labels). */
  get(): { name: string; help: string; type: string; aggregator: string; values: { labels: Record<string, string | number>; value: number; metricName: string }[] } {
    const values: { labels: Record<string, string | number>; value: number; metricName: string }[] = [];
    const width = this.#bounds.length + 1;
    for (const slot of this.#keys.keys()) {
      const labels = this.#labels[slot]!;
      let acc = 0;
      for (let b = 0; b < width; b++) {
        acc += this.#counts[slot * width + b]!;
        values.push({ labels: { ...labels, le: b < this.#bounds.length ? this.#bounds[b]! : '+Inf' }, value: acc, metricName: `${this.name}_bucket` });
      }
      values.push({ labels, value: this.#sums[slot]!, metricName: `${this.name}_sum` });
      values.push({ labels, value: acc, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  reset(): void {
    this.#counts.fill(0);
    this.#sums.fill(0);
  }
}

// A counter key is a slot, not an id (telemetry.ts's largest is a few thousand): a larger one is a caller's bug.
const MAX_COUNTER_KEY = 1 << 16;

/**
 * A labelled Prometheus counter for per-query counts: the caller encodes its label values as one small
 * non-negative integer (a slot: telemetry.ts's keys are a few hundred at most), so a count is one array index —
 * no label hashing, no key string, no hash-table probe (a Map by number was one per query per counter);
 * `labelsOf` turns a key back into its labels the first time the key is seen.
 */
export class FastCounter {
  readonly name: string;
  readonly help: string;
  readonly type = 'counter';
  readonly aggregator = 'sum';
  // By key (a holey array: only the keys seen), and in the order first seen (the exposition's order).
  readonly #byKey: ({ labels: Record<string, string>; value: number } | undefined)[] = [];
  readonly #series: { labels: Record<string, string>; value: number }[] = [];
  readonly #labelsOf: (key: number) => Record<string, string>;

  /** `initialKeys`: series exported as 0 before their first count (e.g. the one series of a label-less counter). */
  constructor(opts: { name: string; help: string; registry: Registry; labelsOf: (key: number) => Record<string, string>; initialKeys?: readonly number[] }) {
    this.name = opts.name;
    this.help = opts.help;
    this.#labelsOf = opts.labelsOf;
    for (const key of opts.initialKeys ?? []) this.declare(key);
    opts.registry.registerMetric(this as never);
  }

  /** Exports `key`'s series (0) from now on, before its first count. */
  declare(key: number): void {
    if (this.#byKey[key] === undefined) this.#add(key, 0);
  }

  /** Adds 1 to the series `key`. */
  inc(key: number): void {
    const series = this.#byKey[key];
    if (series !== undefined) series.value += 1;
    else this.#add(key, 1);
  }

  #add(key: number, value: number): void {
    if (!Number.isInteger(key) || key < 0 || key > MAX_COUNTER_KEY) throw new RangeError(`${this.name}: counter key ${key} is not a slot in 0..${MAX_COUNTER_KEY}`);
    const series = { labels: this.#labelsOf(key), value };
    this.#byKey[key] = series;
    this.#series.push(series);
  }

  get(): { name: string; help: string; type: string; aggregator: string; values: { labels: Record<string, string>; value: number }[] } {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.#series.map((s) => ({ labels: s.labels, value: s.value })) };
  }

  reset(): void {
    this.#byKey.length = 0;
    this.#series.length = 0;
  }
}
