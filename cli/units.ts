// Formatting and parsing of the quantities the CLI shows and accepts: bytes, rates, durations.

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];

/** `1536` → `1.5 KiB`; binary units, because quotas and part sizes are powers of two. */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes)) return "?";
  let value = Math.abs(bytes);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const sign = bytes < 0 ? "-" : "";
  return unit === 0 ? `${sign}${value} B` : `${sign}${value.toFixed(value < 10 ? 2 : 1)} ${UNITS[unit]}`;
}

/** Bytes per second as `12.3 MiB/s`. */
export function formatRate(bytesPerSecond: number): string {
  return `${formatBytes(Math.round(bytesPerSecond))}/s`;
}

/** Seconds as `45s`, `12m05s` or `3h07m`; `?` when unknown. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  const hours = Math.floor(s / 3600);
  if (hours < 48) return `${hours}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(hours / 24)}d${String(hours % 24).padStart(2, "0")}h`;
}

const DURATION_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400 };

/** `900`, `90s`, `15m`, `2h`, `7d` → seconds; null when the text is not such a duration. */
export function parseDuration(text: string): number | null {
  const match = /^(\d+)\s*([smhd]?)$/i.exec(text.trim());
  if (!match) return null;
  return Number(match[1]) * DURATION_UNITS[(match[2] || "s").toLowerCase()];
}

/** A whole number within bounds, or null. */
export function parseWholeNumber(text: string, min: number, max: number): number | null {
  if (!/^\d+$/.test(text.trim())) return null;
  const n = Number(text);
  return n >= min && n <= max ? n : null;
}

/** Rate meter over a sliding window, so a stall shows up in the rate and the ETA within seconds. */
export class RateMeter {
  #samples: { t: number; total: number }[] = [];
  #total = 0;
  readonly windowMs: number;

  constructor(windowMs = 10_000) {
    this.windowMs = windowMs;
    this.#samples.push({ t: Date.now(), total: 0 });
  }

  /** Counts `delta` more bytes (negative when a failed attempt is taken back). */
  add(delta: number): void {
    this.#total += delta;
    const now = Date.now();
    this.#samples.push({ t: now, total: this.#total });
    while (this.#samples.length > 2 && now - this.#samples[1].t > this.windowMs) this.#samples.shift();
  }

  /** Bytes per second over the window; 0 until there is anything to measure. */
  rate(): number {
    const now = Date.now();
    const first = this.#samples[0];
    const elapsed = (now - first.t) / 1000;
    if (elapsed < 0.5) return 0;
    return Math.max(0, (this.#total - first.total) / elapsed);
  }

  /** Seconds until `remaining` bytes are through at the current rate; Infinity when stalled. */
  eta(remaining: number): number {
    const rate = this.rate();
    if (remaining <= 0) return 0;
    return rate > 0 ? remaining / rate : Number.POSITIVE_INFINITY;
  }
}
