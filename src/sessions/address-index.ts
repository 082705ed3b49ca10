// An index of CIDRs (IPv4 and IPv6) to items: which items cover an address (longest prefix first)
// and which items overlap a CIDR, each in time that depends on the address width and the items in
// the queried range, never on how many items the index holds. A path-compressed binary trie
// (PATRICIA) over one 128-bit space: IPv4 lives at ::ffff:0:0/96, so "10.0.0.1" and
// "::ffff:10.0.0.1" are one address, as node:net's BlockList treats them. Holds no session logic:
// callers say which items count (live, not themselves) with a predicate.
import { isIP } from 'node:net';

/** An address as eight 16-bit groups (small integers: no heap numbers). */
export type AddressKey = readonly number[];

const BITS = 128;

interface Node<T> {
  readonly key: AddressKey; // bits past len are zero
  readonly len: number;
  items: T[] | null; // null: a branch node that only joins two subtrees
  zero: Node<T> | null;
  one: Node<T> | null;
}

function bitAt(key: AddressKey, i: number): number {
  return (key[i >> 4]! >> (15 - (i & 15))) & 1;
}

/** Length of the common prefix of a and b, at most max bits. */
function commonLength(a: AddressKey, b: AddressKey, max: number): number {
  for (let w = 0; w * 16 < max; w++) {
    const x = a[w]! ^ b[w]!;
    if (x !== 0) return Math.min(max, w * 16 + Math.clz32(x) - 16);
  }
  return max;
}

function masked(key: AddressKey, len: number): number[] {
  const out = new Array<number>(8);
  for (let w = 0; w < 8; w++) {
    const keep = len - w * 16;
    out[w] = keep >= 16 ? key[w]! : keep <= 0 ? 0 : key[w]! & ((0xffff << (16 - keep)) & 0xffff);
  }
  return out;
}

function parseV4(text: string, out: number[], at: number): boolean {
  const parts = text.split('.');
  if (parts.length !== 4) return false;
  const b: number[] = [];
  for (const p of parts) {
    if (!/^(?:0|[1-9]\d{0,2})$/.test(p)) return false; // no leading zeros, as node:net's isIP
    const n = Number(p);
    if (n > 255) return false;
    b.push(n);
  }
  out[at] = (b[0]! << 8) | b[1]!;
  out[at + 1] = (b[2]! << 8) | b[3]!;
  return true;
}

function parseGroups(text: string, out: number[], at: number, allowV4Tail: boolean): number {
  if (text === '') return 0;
  const groups = text.split(':');
  let n = 0;
  for (const [i, g] of groups.entries()) {
    if (allowV4Tail && i === groups.length - 1 && g.includes('.')) {
      if (!parseV4(g, out, at + n)) return -1;
      n += 2;
    } else {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return -1;
      out[at + n] = parseInt(g, 16);
      n++;
    }
  }
  return n;
}

/** "10.0.0.1", "2001:db8::1", "::ffff:10.0.0.1", "fe80::1%eth0" → key; undefined if not an IP address. */
export function addressKey(text: string): AddressKey | undefined {
  if (!text.includes(':')) {
    const out = [0, 0, 0, 0, 0, 0xffff, 0, 0];
    return parseV4(text, out, 6) ? out : undefined;
  }
  if (isIP(text) !== 6) return undefined; // validates; the parse below only takes valid text apart
  const zone = text.indexOf('%'); // only IPv6 addresses have zones
  const address = zone >= 0 ? text.slice(0, zone) : text;
  const out = [0, 0, 0, 0, 0, 0, 0, 0];
  const gap = address.indexOf('::');
  if (gap < 0) return parseGroups(address, out, 0, true) === 8 ? out : undefined;
  const tail: number[] = [];
  const head = parseGroups(address.slice(0, gap), out, 0, false);
  const tailCount = parseGroups(address.slice(gap + 2), tail, 0, true);
  if (head < 0 || tailCount < 0 || head + tailCount > 7) return undefined;
  for (let i = 0; i < tailCount; i++) out[8 - tailCount + i] = tail[i]!;
  return out;
}

/** "10.0.0.0/8" → its network key and prefix length in the 128-bit space (IPv4 /8 → /104). */
export function cidrKey(text: string): { key: AddressKey; len: number } | undefined {
  const [address, prefixText, extra] = text.split('/');
  if (address === undefined || extra !== undefined) return undefined;
  const key = addressKey(address);
  if (key === undefined) return undefined;
  const v4 = !address.includes(':');
  const max = v4 ? 32 : 128;
  if (prefixText !== undefined && !/^\d{1,3}$/.test(prefixText)) return undefined;
  const prefix = prefixText === undefined ? max : Number(prefixText);
  if (prefix > max) return undefined;
  const len = v4 ? 96 + prefix : prefix;
  return { key: masked(key, len), len };
}

export class AddressIndex<T> {
  #root: Node<T> | null = null;

  /** Adds item under the CIDR (key need not be masked). */
  add(key: AddressKey, len: number, item: T): void {
    const k = masked(key, len);
    const leaf = (): Node<T> => ({ key: k, len, items: [item], zero: null, one: null });
    let parent: Node<T> | null = null;
    let node = this.#root;
    while (node !== null) {
      const common = commonLength(node.key, k, Math.min(node.len, len));
      if (common < node.len) {
        // The new prefix leaves node's path inside node's prefix: it becomes node's parent, or a
        // branch node at the fork joins the two.
        let joined: Node<T>;
        if (common === len) {
          joined = leaf();
        } else {
          joined = { key: masked(k, common), len: common, items: null, zero: null, one: null };
          this.#setChild(joined, bitAt(k, common), leaf());
        }
        this.#setChild(joined, bitAt(node.key, common), node);
        this.#replace(parent, node, joined);
        return;
      }
      if (node.len === len) {
        (node.items ??= []).push(item);
        return;
      }
      const next: Node<T> | null = bitAt(k, node.len) === 0 ? node.zero : node.one;
      if (next === null) {
        this.#setChild(node, bitAt(k, node.len), leaf());
        return;
      }
      parent = node;
      node = next;
    }
    this.#root = leaf();
  }

  /** Removes item from the CIDR; returns false if it was not there. */
  remove(key: AddressKey, len: number, item: T): boolean {
    const k = masked(key, len);
    const path: Node<T>[] = [];
    let node = this.#root;
    while (node !== null && node.len <= len && commonLength(node.key, k, node.len) === node.len) {
      if (node.len === len) break;
      path.push(node);
      node = bitAt(k, node.len) === 0 ? node.zero : node.one;
    }
    if (node === null || node.len !== len || node.items === null) return false;
    const at = node.items.indexOf(item);
    if (at < 0) return false;
    node.items.splice(at, 1);
    if (node.items.length > 0) return true;
    node.items = null;
    // Keep the trie compressed: a node without items keeps its place only while it joins two subtrees.
    let current: Node<T> = node;
    for (;;) {
      if (current.items !== null || (current.zero !== null && current.one !== null)) break;
      const parent = path.pop() ?? null;
      this.#replace(parent, current, current.zero ?? current.one);
      if (parent === null) break;
      current = parent;
    }
    return true;
  }

  /** The item of the longest prefix covering the address that `accept` takes (first added wins a tie). */
  lookup(address: AddressKey, accept: (item: T) => boolean): T | undefined {
    let found: T | undefined;
    let node = this.#root;
    while (node !== null && commonLength(node.key, address, node.len) === node.len) {
      if (node.items !== null) {
        for (const item of node.items) {
          if (accept(item)) {
            found = item;
            break;
          }
        }
      }
      if (node.len === BITS) break;
      node = bitAt(address, node.len) === 0 ? node.zero : node.one;
    }
    return found;
  }

  /** An item `accept` takes whose CIDR overlaps the given one (covers it, or lies inside it), or undefined. */
  overlapping(key: AddressKey, len: number, accept: (item: T) => boolean): T | undefined {
    const k = masked(key, len);
    let node = this.#root;
    while (node !== null) {
      if (node.len > len) {
        // Below the queried prefix: the whole subtree is inside the range, or none of it is.
        return commonLength(node.key, k, len) === len ? this.#anyIn(node, accept) : undefined;
      }
      if (commonLength(node.key, k, node.len) < node.len) return undefined;
      if (node.items !== null) for (const item of node.items) if (accept(item)) return item;
      if (node.len === len) {
        const inside = this.#anyIn(node.zero, accept);
        return inside !== undefined ? inside : this.#anyIn(node.one, accept);
      }
      node = bitAt(k, node.len) === 0 ? node.zero : node.one;
    }
    return undefined;
  }

  #anyIn(top: Node<T> | null, accept: (item: T) => boolean): T | undefined {
    const stack: Node<T>[] = top === null ? [] : [top];
    for (let node = stack.pop(); node !== undefined; node = stack.pop()) {
      if (node.items !== null) for (const item of node.items) if (accept(item)) return item;
      if (node.one !== null) stack.push(node.one);
      if (node.zero !== null) stack.push(node.zero);
    }
    return undefined;
  }

  #setChild(parent: Node<T>, bit: number, child: Node<T>): void {
    if (bit === 0) parent.zero = child;
    else parent.one = child;
  }

  #replace(parent: Node<T> | null, old: Node<T>, next: Node<T> | null): void {
    if (parent === null) this.#root = next;
    else if (parent.zero === old) parent.zero = next;
    else parent.one = next;
  }
}

/** How many addresses the CIDRs cover in all (2^128 is still a finite double); IPv4 sits at ::ffff:0:0/96. */
export function addressCount(cidrs: readonly string[]): number {
  let n = 0;
  for (const c of cidrs) {
    const k = cidrKey(c);
    if (k !== undefined) n += 2 ** (128 - k.len);
  }
  return n;
}
