// The bridge between commander and a command: builds the context from the global options, runs the
// command, and turns whatever it throws into one clear error (never a stack trace for expected ones)
// and an exit code.
import type { Command } from "commander";
import { ApiError, isAbort, NetworkError } from "../api-client.ts";
import { type GlobalOptions, resolveConfig } from "../config.ts";
import type { CommandContext } from "../context.ts";
import { interruptSignal } from "../interrupt.ts";
import { CliError, EXIT, Output } from "../output.ts";

// biome-ignore lint/suspicious/noExplicitAny: commander hands actions their arguments untyped
export type Handler = (ctx: CommandContext, ...args: any[]) => Promise<number | undefined>;
// biome-ignore lint/suspicious/noExplicitAny: see Handler
export type Action = (handler: Handler) => (...args: any[]) => Promise<void>;

/** Wraps a command handler: the last argument commander passes is the command itself. */
export const action: Action =
  (handler) =>
  async (...args) => {
    const command = args[args.length - 1] as Command;
    const globals = command.optsWithGlobals() as GlobalOptions;
    const out = new Output({ json: Boolean(globals.json), progress: globals.progress !== false });
    const signal = interruptSignal({
      onStop: (name) => out.info(`${name}: stopping (parts in flight finish first; again to quit at once)`),
      onForce: () => {
        // process.exit skips the progress bars' cleanup: give the terminal its cursor back.
        if (out.tty) process.stderr.write("\u001b[?25h");
        out.error("interrupted", "interrupted");
      },
    });
    let code: number;
    try {
      const config = resolveConfig(globals);
      code = (await handler({ out, config, signal }, ...args.slice(0, -1))) ?? EXIT.ok;
    } catch (err) {
      code = report(out, err, signal);
    }
    process.exitCode = code;
  };

/** Writes an error the way the mode asks and returns the exit code it deserves. */
export function report(out: Output, err: unknown, signal?: AbortSignal): number {
  if (err instanceof CliError) {
    out.error(err.code, err.message, err.details);
    return err.exitCode;
  }
  if (isAbort(err) || signal?.aborted) {
    out.error("interrupted", "interrupted");
    return EXIT.interrupted;
  }
  if (err instanceof ApiError) {
    const where = err.requestId ? ` (HTTP ${err.status}, request ${err.requestId})` : ` (HTTP ${err.status})`;
    out.error(err.code, `${err.message}${where}`, err.details);
    return EXIT.failed;
  }
  if (err instanceof NetworkError) {
    out.error("network_error", err.message);
    return EXIT.failed;
  }
  // A bug or an unexpected failure: the message, and the stack only when asked for.
  const message = err instanceof Error ? err.message : String(err);
  out.error("internal_error", message);
  if (process.env.DURABLE_UPLOADS_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  return EXIT.failed;
}
