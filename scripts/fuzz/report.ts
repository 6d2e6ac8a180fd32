// The fuzzer's report as text: status counts by route family, every finding with the request that caused
// it and who answered, the runtime-only answers (excused, with the rule), the probes, the ledgers.
import type { FuzzResult } from "./run.ts";

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + " ".repeat(width - text.length);
}

function indent(text: string, by = "      "): string {
  return text
    .split("\n")
    .map((l) => by + l)
    .join("\n");
}

export function statusTable(result: FuzzResult): string {
  const families = Object.keys(result.table).sort();
  const rows: string[][] = [
    ["family", "total", "2xx", "3xx", "4xx", "5xx", "runtime", "none", "p50/p95 ms", "statuses"],
  ];
  const totals = { total: 0, s2: 0, s3: 0, s4: 0, s5: 0, rt: 0, none: 0 };
  for (const family of families) {
    const counts = result.table[family];
    const sum = (test: (k: string) => boolean) =>
      Object.entries(counts)
        .filter(([k]) => test(k))
        .reduce((n, [, v]) => n + v, 0);
    const row = {
      total: sum(() => true),
      s2: sum((k) => /^2/.test(k)),
      s3: sum((k) => /^3/.test(k)),
      s4: sum((k) => /^4/.test(k)),
      s5: sum((k) => /^5/.test(k)),
      rt: sum((k) => k.startsWith("rt")),
      none: sum((k) => k === "none"),
    };
    for (const k of Object.keys(totals) as (keyof typeof totals)[]) totals[k] += row[k];
    const statuses = Object.entries(counts)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => `${k}×${v}`)
      .join(" ");
    const ms = result.latency[family];
    const timing = ms ? `${ms.p50}/${ms.p95}` : "";
    rows.push([family, ...[row.total, row.s2, row.s3, row.s4, row.s5, row.rt, row.none].map(String), timing, statuses]);
  }
  rows.push([
    "all",
    ...[totals.total, totals.s2, totals.s3, totals.s4, totals.s5, totals.rt, totals.none].map(String),
    "",
    "",
  ]);
  const widths = rows[0].map((_, i) => (i === rows[0].length - 1 ? 0 : Math.max(...rows.map((r) => r[i].length))));
  return rows
    .map((r) =>
      r
        .map((cell, i) => pad(cell, widths[i]))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export function formatReport(result: FuzzResult, failing: string[]): string {
  const out: string[] = [];
  out.push(
    `seed ${result.seed}: ${result.requests} requests in ${result.seconds.toFixed(1)} s over ${result.lanes} lanes ` +
      `(${(result.requests / Math.max(result.seconds, 0.001)).toFixed(0)}/s), ` +
      `plus ${result.probeRequests} probe requests`,
  );
  if (result.reloads > 0)
    out.push(`the dev server reloaded ${result.reloads} time(s) during the run (requests around a reload are excused)`);
  if (!result.appLog) out.push("the server's output was not available: app log lines were not cross-checked");
  out.push(
    "",
    "STATUS COUNTS (5xx = from the app; runtime = answered by the local runtime, no X-Request-Id)",
    statusTable(result),
  );

  out.push("", `FINDINGS (${result.findings.length})`);
  if (result.findings.length === 0) out.push("  none");
  for (const f of result.findings.sort((a, b) => b.count - a.count)) {
    out.push(`  [${f.key}] ${f.title} ×${f.count}`);
    for (const ex of f.examples) {
      const logged = ex.appLogged !== null ? `; the app logged ${ex.appLogged}` : "";
      const reload = ex.reloadNear !== null && Math.abs(ex.reloadNear) < 120 ? `; reload ${ex.reloadNear} s away` : "";
      const who = `${ex.lane} ${ex.requestId ?? ""} at ${ex.at} s`;
      out.push(`    - ${who} (${ex.intent}); answered by ${ex.layer}${logged}${reload}`);
      out.push(indent(ex.request), indent(`→ ${ex.response}`));
    }
  }

  out.push(
    "",
    "RUNTIME-ONLY ANSWERS (excused: a known signature for a request broken in that way; see docs/fuzzing.md)",
  );
  if (result.runtimeOnly.length === 0) out.push("  none");
  for (const r of result.runtimeOnly) {
    out.push(`  ${r.signature} ×${r.count}: ${r.who}`);
    const ex = r.examples[0];
    if (ex) {
      out.push(
        `    e.g. ${ex.intent}${ex.appLogged !== null ? `; the app logged ${ex.appLogged}` : "; no app log line"}`,
      );
      out.push(indent(ex.request), indent(`→ ${ex.response}`));
    }
  }

  out.push("", `PROBES (${result.probes.filter((p) => p.pass).length}/${result.probes.length} pass)`);
  for (const p of result.probes) {
    out.push(`  ${p.pass ? "PASS" : "FAIL"} ${p.id}: ${p.observed}`);
    if (!p.pass) out.push(`       expected ${p.expected}  [issue 17: ${p.item}]`);
  }

  const ledger = result.ledger;
  out.push(
    "",
    ledger
      ? `LEDGERS ${ledger.pass ? "intact" : "NOT intact"} ` +
          `(${ledger.attempts} pass(es), ${(ledger.ms / 1000).toFixed(1)} s)`
      : "LEDGERS not checked",
  );
  if (ledger) {
    for (const u of ledger.users) {
      const bad = u.checks.filter((c) => !c.pass);
      const usage = u.usage
        ? `used ${u.usage.usedBytes} B / ${u.usage.fileCount} files, ` +
          `reserved ${u.usage.reservedBytes} B / ${u.usage.activeUploads} uploads`
        : "unreachable";
      out.push(`  ${bad.length === 0 ? "ok  " : "FAIL"} ${u.userId}: ${usage}`);
      for (const c of bad) out.push(`       ${c.name}: ${c.detail}`);
    }
    for (const c of ledger.totals) out.push(`  ${c.pass ? "ok  " : "FAIL"} ${c.name}: ${c.detail}`);
  }

  out.push("", failing.length === 0 ? "RESULT: pass" : `RESULT: ${failing.length} failing: ${failing.join(", ")}`);
  return out.join("\n");
}
