// Where the CLI's words go. With `--json`, stdout carries exactly one JSON document and nothing else;
// without it, stdout carries the result a script would capture (file ids, listings) and stderr the
// rest. Progress and human commentary always go to stderr, so they never mix with the result.

/** Exit codes: 0 only on full success. */
export const EXIT = { ok: 0, failed: 1, usage: 2, interrupted: 130 } as const;

/**
 * An expected failure: bad input, a refusal from the server, a missing credential. Shown as one clear
 * line (never a stack trace) and, with `--json`, as `{"error":{code,message,details?}}` on stdout.
 */
export class CliError extends Error {
  readonly code: string;
  readonly exitCode: number;
  readonly details: unknown;

  constructor(code: string, message: string, options: { exitCode?: number; details?: unknown } = {}) {
    super(message);
    this.name = "CliError";
    this.code = code;
    this.exitCode = options.exitCode ?? EXIT.failed;
    this.details = options.details;
  }
}

/** The error a command throws when the user asked it to stop (Ctrl-C, SIGTERM). */
export function interrupted(hint: string): CliError {
  return new CliError("interrupted", `interrupted; ${hint}`, { exitCode: EXIT.interrupted });
}

/** Writes results, commentary and errors following the rules above, for one command. */
export class Output {
  readonly json: boolean;
  /** Whether stderr is a terminal (progress bars) rather than a log (plain lines). */
  readonly tty: boolean;
  readonly progress: boolean;
  #resultWritten = false;
  /** While progress bars are on screen, commentary goes through them so it does not tear them. */
  #sink: ((line: string) => void) | null = null;

  constructor(options: { json: boolean; progress: boolean }) {
    this.json = options.json;
    this.progress = options.progress;
    this.tty = Boolean(process.stderr.isTTY) && process.env.TERM !== "dumb";
  }

  /** Human commentary: always stderr. */
  info(line: string): void {
    if (this.#sink) this.#sink(line);
    else process.stderr.write(`${line}\n`);
  }

  /** A warning, on stderr. */
  warn(line: string): void {
    this.info(`warning: ${line}`);
  }

  /** Routes commentary through a display that owns the terminal (or back to stderr with null). */
  setSink(sink: ((line: string) => void) | null): void {
    this.#sink = sink;
  }

  /**
   * The command's result: the JSON document with `--json`, otherwise the human text on stdout (which
   * may be empty when everything was already said on stderr). Written once.
   */
  result(document: unknown, human: string): void {
    if (this.#resultWritten) throw new Error("result written twice");
    this.#resultWritten = true;
    if (this.json) process.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
    else if (human) process.stdout.write(human.endsWith("\n") ? human : `${human}\n`);
  }

  /** Reports a failure that ends the command, in the shape the mode asks for. */
  error(code: string, message: string, details?: unknown): void {
    process.stderr.write(`error: ${message}\n`);
    if (this.json && !this.#resultWritten) {
      this.#resultWritten = true;
      const error = details === undefined ? { code, message } : { code, message, details };
      process.stdout.write(`${JSON.stringify({ error }, null, 2)}\n`);
    }
  }
}

/** Lays out rows as left-aligned columns (the last one unpadded) for human listings. */
export function table(rows: string[][]): string {
  if (rows.length === 0) return "";
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows
    .map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]))).join("  "))
    .join("\n");
}
