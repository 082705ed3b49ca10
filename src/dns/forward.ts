// Conditional forwarding (`forward_zones`): picks, per query, the resolver of the most specific forward zone
// that holds the name (the zone itself or any name below it), else the default one. Each zone's resolver is an
// UpstreamPool of its own (same answer checks, failover and failure values as the default upstreams); the cache
// sits in front of this router, so every zone is cached alike and the cache's bounds hold for all of them.
// Owns only the choice of resolver; never judges a name (the pipeline has judged it before it gets here) and
// never opens a socket itself.
import type { Resolution, Resolver } from './upstream.js';
import type { Query } from './wire.js';

export interface ForwardZone {
  /** Lower-case, no trailing dot: 'ad.example.com'. */
  readonly name: string;
  readonly resolver: Resolver;
}

/** The zone among `zones` that holds `name` with the most labels, or undefined. Names and zones are lower-case. */
export function forwardZoneFor<Z extends { readonly name: string }>(zones: readonly Z[], name: string): Z | undefined {
  let best: Z | undefined;
  for (const zone of zones) {
    const z = zone.name;
    const holds = z === '' || name === z || (name.length > z.length && name.endsWith(z) && name.charCodeAt(name.length - z.length - 1) === 46 /* . */);
    if (holds && (best === undefined || z.length > best.name.length)) best = zone;
  }
  return best;
}

export class ForwardingResolver implements Resolver {
  readonly #zones: readonly ForwardZone[];
  readonly #fallback: Resolver;

  constructor(zones: readonly ForwardZone[], fallback: Resolver) {
    this.#zones = zones;
    this.#fallback = fallback;
  }

  resolve(q: Query): Resolution | Promise<Resolution> {
    // Without forward zones this costs one length check per cache miss.
    if (this.#zones.length === 0) return this.#fallback.resolve(q);
    return (forwardZoneFor(this.#zones, q.name)?.resolver ?? this.#fallback).resolve(q);
  }
}
