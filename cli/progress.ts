// Progress on stderr: bars on a terminal (cli-progress), plain periodic lines in a log, nothing with
// --no-progress. The numbers live here; the display only reads them on a timer, so counting a chunk
// costs nothing and the bars redraw a few times a second whatever the traffic.
import cliProgress from "cli-progress";
import type { Output } from "./output.ts";
import { formatBytes, formatDuration, formatRate, RateMeter } from "./units.ts";

/** How often a log gets a progress line. */
const PLAIN_INTERVAL_MS = 2_000;
const TTY_REFRESH_MS = 200;
const LABEL_WIDTH = 32;

export interface ProgressOptions {
  /** The overall line's label, e.g. "upload" or "migrate". */
  title: string;
  totalBytes: number;
  /** Count files in the overall line ("files 3/10"). */
  totalFiles?: number;
  /** Keep a finished file's bar on screen (a few files) or drop it (a migration's thousands). */
  keepFinished?: boolean;
}

/** One file's share of the progress. */
export interface FileProgress {
  /** Counts `delta` bytes sent (negative to take back a failed attempt). */
  add(delta: number): void;
  /** Counts bytes that were already there (a resumed upload): done, but not moved by this run. */
  skip(delta: number): void;
  /** The file is through (or given up): its bar stops counting as active. */
  finish(success: boolean): void;
}

interface FileState {
  label: string;
  size: number;
  done: number;
  bar: cliProgress.SingleBar | null;
  active: boolean;
}

/** Terminal columns of a character: 2 for East Asian wide characters and emoji, else 1. */
function charWidth(char: string): number {
  const code = char.codePointAt(0) ?? 0;
  const wide =
    (code >= 0x1100 && code <= 0x115f) ||
    (code >= 0x2e80 && code <= 0xa4cf) ||
    (code >= 0xac00 && code <= 0xd7a3) ||
    (code >= 0xf900 && code <= 0xfaff) ||
    (code >= 0xfe30 && code <= 0xfe4f) ||
    (code >= 0xff00 && code <= 0xff60) ||
    (code >= 0xffe0 && code <= 0xffe6) ||
    (code >= 0x1f300 && code <= 0x1faff);
  return wide ? 2 : 1;
}

/**
 * A label cut to LABEL_WIDTH columns and padded to it, so the bars line up. A long path keeps its
 * first segment (the owner, in a migration) and its end (the file name): `ada/…/name.ext`.
 */
function fitLabel(label: string): string {
  const chars = Array.from(label.replace(/[\u0000-\u001f\u007f]/g, " "));
  const width = (cs: string[]) => cs.reduce((w, c) => w + charWidth(c), 0);
  let shown = chars;
  if (width(chars) > LABEL_WIDTH) {
    const slash = label.indexOf("/");
    const head = slash > 0 && slash < LABEL_WIDTH / 2 ? Array.from(label.slice(0, slash + 1)) : [];
    const tail: string[] = [];
    let room = LABEL_WIDTH - width(head) - 1;
    for (let i = chars.length - 1; i >= head.length && room - charWidth(chars[i]) >= 0; i--) {
      room -= charWidth(chars[i]);
      tail.unshift(chars[i]);
    }
    shown = [...head, "…", ...tail];
  }
  return shown.join("") + " ".repeat(Math.max(0, LABEL_WIDTH - width(shown)));
}

/** The progress of one command: an overall line and one line per file in flight. */
export class Progress {
  readonly #out: Output;
  readonly #options: ProgressOptions;
  readonly #meter = new RateMeter();
  readonly #files: FileState[] = [];
  readonly #timer: NodeJS.Timeout | null;
  readonly #multi: cliProgress.MultiBar | null = null;
  readonly #overall: cliProgress.SingleBar | null = null;
  #totalBytes: number;
  #doneBytes = 0;
  #filesDone = 0;
  #totalFiles: number | undefined;
  #stopped = false;

  constructor(out: Output, options: ProgressOptions) {
    this.#out = out;
    this.#options = options;
    this.#totalBytes = options.totalBytes;
    this.#totalFiles = options.totalFiles;
    if (!out.progress) {
      this.#timer = null;
      return;
    }
    if (out.tty) {
      this.#multi = new cliProgress.MultiBar(
        {
          stream: process.stderr,
          // Our own tokens: cli-progress's built-in {eta} and {value} would override payload of that name.
          format: "{label} {bar} {pct} {amount} {rate} ETA {remaining}{extra}",
          barsize: 24,
          hideCursor: true,
          clearOnComplete: false,
          autopadding: true,
          // Redraws come from our timer; the library's own would run between them for nothing.
          fps: 5,
          // Redraw every bar each time: after a log line clears the area, an unchanged bar would vanish.
          forceRedraw: true,
          noTTYOutput: false,
        },
        cliProgress.Presets.shades_classic,
      );
      this.#overall = this.#multi.create(1, 0, this.#overallPayload());
      out.setSink((line) => this.note(line));
      this.#timer = setInterval(() => this.#render(), TTY_REFRESH_MS);
    } else {
      this.#timer = setInterval(() => this.#printLine(), PLAIN_INTERVAL_MS);
    }
    this.#timer.unref();
  }

  /** Grows the totals, for work discovered after the display started. */
  addTotal(bytes: number, files = 0): void {
    this.#totalBytes += bytes;
    if (this.#totalFiles !== undefined) this.#totalFiles += files;
  }

  /**
   * Starts a file. `already` bytes were sent before (a resumed upload): they count as done but not
   * toward the rate, so the ETA reflects what this run actually moves.
   */
  file(label: string, size: number, already = 0): FileProgress {
    const state: FileState = { label, size, done: already, bar: null, active: true };
    this.#doneBytes += already;
    if (this.#multi) {
      state.bar = this.#multi.create(Math.max(1, size), already, this.#filePayload(state), {
        format: "{label} {bar} {pct} {amount}",
      });
    }
    this.#files.push(state);
    return {
      add: (delta) => {
        state.done += delta;
        this.#doneBytes += delta;
        this.#meter.add(delta);
      },
      skip: (delta) => {
        state.done += delta;
        this.#doneBytes += delta;
      },
      finish: (success) => {
        if (!state.active) return;
        state.active = false;
        if (success) this.#filesDone++;
        if (state.bar && this.#multi) {
          if (this.#options.keepFinished) state.bar.update(Math.max(1, state.done), this.#filePayload(state));
          else this.#multi.remove(state.bar);
        }
        if (!this.#options.keepFinished) this.#files.splice(this.#files.indexOf(state), 1);
      },
    };
  }

  /** Counts a file as finished without a bar (skipped, or done in an earlier run). */
  skipFile(bytes: number): void {
    this.#doneBytes += bytes;
    this.#filesDone++;
  }

  /** A line of commentary that does not break the bars. */
  note(line: string): void {
    if (this.#multi && !this.#stopped) {
      // Flushed at once: cli-progress otherwise holds log lines until its next redraw, and stop() drops them.
      this.#multi.log(`${line}\n`);
      this.#render();
      this.#multi.update();
    } else this.#out.info(line);
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    if (this.#multi) {
      this.#out.setSink(null);
      this.#render();
      this.#multi.stop();
    } else if (this.#out.progress) {
      this.#printLine();
    }
  }

  #eta(): string {
    return formatDuration(this.#meter.eta(this.#totalBytes - this.#doneBytes));
  }

  #filesText(): string {
    return this.#totalFiles === undefined ? "" : ` files ${this.#filesDone}/${this.#totalFiles}`;
  }

  #overallPayload() {
    return {
      label: fitLabel(this.#options.title),
      pct: `${this.#percent(this.#doneBytes, this.#totalBytes)}%`.padStart(4),
      amount: `${formatBytes(this.#doneBytes)}/${formatBytes(this.#totalBytes)}`,
      rate: formatRate(this.#meter.rate()),
      remaining: this.#eta(),
      extra: this.#filesText(),
    };
  }

  #filePayload(state: FileState) {
    return {
      label: fitLabel(`  ${state.label}`),
      pct: `${this.#percent(state.done, state.size)}%`.padStart(4),
      amount: `${formatBytes(state.done)}/${formatBytes(state.size)}`,
    };
  }

  #percent(done: number, total: number): number {
    return total > 0 ? Math.min(100, Math.floor((done / total) * 100)) : 100;
  }

  #render(): void {
    if (!this.#multi || !this.#overall) return;
    this.#overall.setTotal(Math.max(1, this.#totalBytes));
    this.#overall.update(Math.max(0, this.#doneBytes), this.#overallPayload());
    for (const state of this.#files) {
      if (state.bar && state.active) state.bar.update(Math.max(0, state.done), this.#filePayload(state));
    }
  }

  #printLine(): void {
    const active = this.#files.filter((f) => f.active).map((f) => f.label);
    const shown = active.slice(0, 4).join(", ") + (active.length > 4 ? `, +${active.length - 4}` : "");
    this.#out.info(
      `${this.#options.title}: ${this.#percent(this.#doneBytes, this.#totalBytes)}% ` +
        `${formatBytes(this.#doneBytes)}/${formatBytes(this.#totalBytes)}, ${formatRate(this.#meter.rate())}, ` +
        `ETA ${this.#eta()}${this.#filesText()}${shown ? `, active: ${shown}` : ""}`,
    );
  }
}
