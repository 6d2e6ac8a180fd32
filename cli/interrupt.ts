// Ctrl-C and SIGTERM stop a command in two steps. The first stops starting new work: parts already in
// flight are allowed to finish (a part cut off half-way is wasted, and one whose bytes had all left
// might still be recorded by the server after we are gone, and then be sent again by the resumed run),
// everything else (waits, hashing, downloads) is aborted, and the command reports how to resume and
// exits 130. A second signal exits at once.
import { EXIT } from "./output.ts";

export interface InterruptHooks {
  /** Told on the first signal (e.g. to say that in-flight parts are being finished). */
  onStop?: (signal: NodeJS.Signals) => void;
  /** Told on the second signal, just before the process exits. */
  onForce?: () => void;
}

/** An AbortSignal that fires on the first SIGINT or SIGTERM; the second exits the process. */
export function interruptSignal(hooks: InterruptHooks = {}): AbortSignal {
  const controller = new AbortController();
  const handler = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      hooks.onForce?.();
      process.exit(EXIT.interrupted);
    }
    hooks.onStop?.(signal);
    const reason = new Error(`stopped by ${signal}`);
    reason.name = "AbortError";
    controller.abort(reason);
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
  return controller.signal;
}
