// The CI pass of the HTTP fuzzer (issue 17; `npm run fuzz` is the full one, see docs/fuzzing.md): the
// fuzzer's own core (scripts/fuzz/run.ts) against a real wrangler dev, seed 17, about 2,000 requests over
// every route, bounded by time so it stays well inside the CI budget on a 2-core machine. It asserts no
// app 5xx (visible or hidden behind the dev runtime), no app error that is not JSON, no runtime answer
// the documented runtime-only class does not explain, every pinned probe, and intact ledgers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatReport } from "../../scripts/fuzz/report.ts";
import { failures, runFuzz } from "../../scripts/fuzz/run.ts";
import { type DevServer, startDevServer } from "./harness.ts";

/**
 * KNOWN FINDINGS: reported to the lead, not fixed yet. Each entry matches failure keys as the report prints
 * them (`kind|route family|status|code`, `probe|id`, `ledger|check`) and names what it belongs to.
 * Delete an entry when its fix lands; entries that match nothing any more are printed at the end of the
 * run so they can go. Never skip the test instead.
 */
const KNOWN_FINDINGS: { match: RegExp; item: string }[] = [];

describe("HTTP fuzzer, CI pass", () => {
  let server: DevServer;
  beforeAll(async () => {
    // 5 MiB parts (the smallest R2 takes), so the few real multi-part uploads stay small.
    server = await startDevServer({ vars: { PART_SIZE_BYTES: 5 * 1024 * 1024 } });
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("answers seed 17's requests without an app 5xx or a non-JSON error, and keeps every ledger intact", async () => {
    const result = await runFuzz({
      target: {
        url: server.url,
        authSecret: server.authSecret,
        adminToken: server.adminToken,
        output: server.output,
        exclusive: true,
      },
      requests: 2000,
      seed: 17,
      seconds: 55,
      lanes: 6,
      ledgerTimeoutMs: 20_000,
    });
    const failing = failures(result);
    const report = formatReport(result, failing);
    console.log(report); // shown only when the test fails
    const unexplained = failing.filter((key) => !KNOWN_FINDINGS.some((k) => k.match.test(key)));
    const stale = KNOWN_FINDINGS.filter((k) => !failing.some((key) => k.match.test(key)));
    if (stale.length > 0)
      console.warn(`KNOWN_FINDINGS entries that matched nothing: ${stale.map((k) => k.item).join("; ")}`);

    expect(unexplained, report).toEqual([]);
    expect(result.ledger, "the ledger check ran").not.toBeNull();
    // Time-bounded: on a loaded machine fewer requests go out, but never so few that the pass means little.
    expect(result.requests).toBeGreaterThanOrEqual(100);
    expect(result.probes.length).toBeGreaterThan(30);
  }, 170_000);
});
