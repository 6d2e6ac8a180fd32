import { Hono } from "hono";
import type { AppEnv } from "./app-env";

/** How long one readiness probe may take before its dependency counts as down. */
const PROBE_TIMEOUT_MS = 3000;

interface CheckResult {
  status: "up" | "down";
  latencyMs: number;
  error?: string;
}

async function probe(run: () => Promise<unknown>): Promise<CheckResult> {
  const started = Date.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${PROBE_TIMEOUT_MS} ms`)), PROBE_TIMEOUT_MS);
    });
    await Promise.race([run(), timeout]);
    return { status: "up", latencyMs: Date.now() - started };
  } catch (err) {
    return { status: "down", latencyMs: Date.now() - started, error: err instanceof Error ? err.message : String(err) };
  } finally {
    clearTimeout(timer);
  }
}

/** Liveness and readiness. Neither needs a token: load balancers and deploy checks call them. */
export const health = new Hono<AppEnv>()
  // Liveness: the isolate answers. Touches no binding, so it stays cheap and never flaps with a dependency.
  .get("/healthz", (c) => c.json({ status: "ok" }))
  // Readiness: every dependency a request may need, probed in parallel with its latency.
  .get("/readyz", async (c) => {
    const env = c.env;
    const probes = {
      d1: () => env.DB.prepare("SELECT 1 AS ok").first(),
      r2: () => env.BUCKET.head(".readyz"),
      userAccount: () => env.USER_ACCOUNT.get(env.USER_ACCOUNT.idFromName(".readyz")).ping(),
      uploadSession: () => env.UPLOAD_SESSION.get(env.UPLOAD_SESSION.idFromName(".readyz")).ping(),
    };
    const names = Object.keys(probes) as (keyof typeof probes)[];
    const results = await Promise.all(names.map((name) => probe(probes[name])));
    const checks = Object.fromEntries(names.map((name, i) => [name, results[i]]));
    const down = names.filter((_, i) => results[i].status === "down");
    if (down.length === 0) return c.json({ status: "ready", checks });
    return c.json({ status: "unavailable", down, checks }, 503);
  });
