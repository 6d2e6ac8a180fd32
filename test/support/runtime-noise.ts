/**
 * Keeps the Workers runtime's routine diagnostics out of a green test run, and prints them all when the
 * run fails.
 *
 * workerd and wrangler write some lines for every test file whatever happens: `NOSENTRY` notes about
 * alarms rescheduled under the test's feet, the reminder to dispose RPC results that the test harness
 * itself holds, the stack of every request stream a test cuts on purpose, and which file the secrets
 * came from. They drown the report (hundreds of lines on a run that passes) and say nothing a failure
 * needs that the failing test's own output does not. So they are held back here, and the reporter below
 * prints every one of them, in order, if any test fails.
 */
import type { Reporter } from "vitest/node";

/** Lines the runtime prints in passing runs; everything else goes through untouched. */
const ROUTINE = [
  /^NOSENTRY /,
  /^An RPC result was not disposed properly/,
  /^Using secrets defined in /,
  /^uncaught exception; (source|exception) = /,
  /^stack: \/.*workerd/,
  /^exception = kj\/async-io\.c\+\+:\d+: disconnected: /,
  /^\s+at Object\.(pull|start) \(/,
];

const held: string[] = [];
/** stderr's own write, for replaying what was held without holding it again. */
let writeStderr: (text: string) => boolean = (text) => process.stderr.write(text);

function filter(stream: NodeJS.WriteStream): (text: string) => boolean {
  const write = stream.write.bind(stream) as (chunk: unknown, ...rest: unknown[]) => boolean;
  stream.write = ((chunk: unknown, ...rest: unknown[]) => {
    if (typeof chunk !== "string" && !(chunk instanceof Uint8Array)) return write(chunk, ...rest);
    const text = typeof chunk === "string" ? chunk : Buffer.from(chunk).toString("utf8");
    const lines = text.split("\n");
    const kept = lines.filter((line, i) => {
      const plain = line.replace(/\u001b\[[0-9;]*m/g, "");
      if (ROUTINE.some((r) => r.test(plain))) {
        held.push(plain);
        return false;
      }
      return plain !== "" || i === lines.length - 1;
    });
    if (kept.length === lines.length) return write(chunk, ...rest);
    const out = kept.join("\n");
    return out.trim() === "" ? true : write(out, ...rest);
  }) as typeof stream.write;
  return (text) => write(text);
}

let installed = false;

/** Holds back the runtime's routine lines (idempotent) and returns a reporter that replays them on failure. */
export function quietRuntime(): Reporter {
  if (!installed) {
    installed = true;
    filter(process.stdout);
    writeStderr = filter(process.stderr);
  }
  return {
    onTestRunEnd(_modules, _errors, reason) {
      if (reason !== "failed" || held.length === 0) return;
      writeStderr(`\n--- Workers runtime output held back during the run (${held.length} lines) ---\n`);
      writeStderr(`${held.join("\n")}\n--- end of runtime output ---\n`);
    },
  };
}
