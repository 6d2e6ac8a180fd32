// A small seeded PRNG (mulberry32) and the helpers the fuzzer draws every decision from, so one seed
// reproduces one request sequence (given the same answers from the server).

export interface Rng {
  /** A float in [0, 1). */
  next(): number;
  /** A whole number in [lo, hi], both included. */
  int(lo: number, hi: number): number;
  /** True with probability `p`. */
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
  /** One of `entries`, each as likely as its weight. */
  weighted<T>(entries: readonly (readonly [T, number])[]): T;
  bytes(n: number): Uint8Array;
  /** A string of `n` characters drawn from `alphabet`. */
  text(n: number, alphabet?: string): string;
}

/** 32-bit FNV-1a of a string: turns a seed and a label into an independent stream's seed. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

const ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** mulberry32 (Tommy Ettinger): tiny, fast, good enough to pick requests; not for cryptography. */
export function mulberry32(seed: number): Rng {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1));
  return {
    next,
    int,
    chance: (p) => next() < p,
    pick: (items) => items[Math.floor(next() * items.length)],
    weighted(entries) {
      const total = entries.reduce((sum, [, w]) => sum + w, 0);
      let r = next() * total;
      for (const [value, w] of entries) {
        r -= w;
        if (r < 0) return value;
      }
      return entries[entries.length - 1][0];
    },
    bytes(n) {
      const out = new Uint8Array(n);
      // Four bytes per draw: 5 MiB parts must not take seconds to make.
      for (let i = 0; i < n; i += 4) {
        const v = (next() * 4294967296) >>> 0;
        out[i] = v & 0xff;
        if (i + 1 < n) out[i + 1] = (v >>> 8) & 0xff;
        if (i + 2 < n) out[i + 2] = (v >>> 16) & 0xff;
        if (i + 3 < n) out[i + 3] = v >>> 24;
      }
      return out;
    },
    text(n, alphabet = ALNUM) {
      let s = "";
      for (let i = 0; i < n; i++) s += alphabet[Math.floor(next() * alphabet.length)];
      return s;
    },
  };
}

/** An independent stream for `label` under `seed` (one per lane, one for the probes). */
export function rngFor(seed: number, label: string): Rng {
  return mulberry32(hash32(`${seed}:${label}`));
}
