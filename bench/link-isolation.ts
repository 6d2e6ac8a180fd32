// Benchmark: does one user's flood of signed-link downloads slow another user down?
//   node bench/link-isolation.ts                         # 3 rounds of 10 s per phase, 16 flooding loops
//   node bench/link-isolation.ts --rounds 5 --seconds 20 --flooders 32
//   node bench/link-isolation.ts --limit 10               # each user's budget: 10 requests/s, burst 20
// Through a real `wrangler dev`, user "victim" sends a steady stream of ordinary API calls (usage, file
// metadata, a 4 KiB download) while user "flooder" hammers links to its own small file. Phases alternate
// round by round (quiet, flood, quiet, flood, ...) so machine noise falls on both. It prints the victim's
// p50/p99 latency in each phase and the ratio flood/quiet, and what the flooder got back (200 vs 429).
//
// Policy under test (docs/files-api.md): a link download spends one unit of the *owner's* GCRA request
// budget, so the flood turns into cheap 429s after the owner's burst, and the victim's own budget and
// account object are never touched. Locally every request shares one workerd process, so the flood's
// CPU still competes with the victim's requests; deployed, requests spread over many isolates.
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { startDevServer } from "../test/e2e/harness.ts";

const { values } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    seconds: { type: "string", default: "10" },
    flooders: { type: "string", default: "16" },
    limit: { type: "string" },
  },
});
const rounds = Number(values.rounds);
const phaseMs = Number(values.seconds) * 1000;
const flooders = Number(values.flooders);

// With --limit, every user's sustained request rate (burst twice that), so a flood can outrun its budget
// even on a slow machine; without it, the service's defaults from wrangler.toml.
const limitVars = values.limit
  ? { RATE_LIMIT_REQUESTS_PER_SECOND: values.limit, RATE_LIMIT_BURST: String(2 * Number(values.limit)) }
  : undefined;
const server = await startDevServer({ vars: limitVars });
try {
  const victim = await server.token("victim");
  const flooder = await server.token("flooder");

  /** Uploads a one-part file for `token` and returns its id. */
  async function smallFile(token: string, size: number): Promise<string> {
    const json = { "Content-Type": "application/json" };
    const body = JSON.stringify({ filename: "small.bin", size });
    const created = (await (
      await server.fetch("/v1/uploads", { method: "POST", token, headers: json, body })
    ).json()) as {
      uploadId: string;
    };
    const put = await server.fetch(`/v1/uploads/${created.uploadId}/parts/1`, {
      method: "PUT",
      token,
      body: randomBytes(size),
    });
    if (put.status !== 200) throw new Error(`part: ${put.status} ${await put.text()}`);
    const done = await server.fetch(`/v1/uploads/${created.uploadId}/complete`, { method: "POST", token });
    if (done.status !== 200) throw new Error(`complete: ${done.status} ${await done.text()}`);
    return ((await done.json()) as { file: { id: string } }).file.id;
  }

  const victimFile = await smallFile(victim, 4096);
  const flooderFile = await smallFile(flooder, 4096);
  const link = (await (
    await server.fetch(`/v1/files/${flooderFile}/links`, {
      method: "POST",
      token: flooder,
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ expiresIn: 3600 }),
    })
  ).json()) as { url: string };

  const victimCalls = [`/v1/usage`, `/v1/files/${victimFile}`, `/v1/files/${victimFile}/content`];

  /** The victim's steady traffic: one call at a time, 20 ms apart, for the phase; latencies in ms. */
  async function victimTraffic(until: number): Promise<{ latencies: number[]; failures: number }> {
    const latencies: number[] = [];
    let failures = 0;
    for (let i = 0; Date.now() < until; i++) {
      const started = performance.now();
      const res = await server.fetch(victimCalls[i % victimCalls.length], { token: victim });
      await res.arrayBuffer();
      latencies.push(performance.now() - started);
      if (res.status !== 200) failures++;
      await new Promise((r) => setTimeout(r, 20));
    }
    return { latencies, failures };
  }

  /** The flood: `flooders` loops downloading the link back to back until the phase ends. */
  async function flood(until: number): Promise<Map<number, number>> {
    const statuses = new Map<number, number>();
    await Promise.all(
      Array.from({ length: flooders }, async () => {
        while (Date.now() < until) {
          const res = await fetch(link.url);
          await res.arrayBuffer();
          statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
        }
      }),
    );
    return statuses;
  }

  const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  const quiet: number[] = [];
  const flooded: number[] = [];
  const floodStatuses = new Map<number, number>();
  let victimFailures = 0;

  for (let round = 1; round <= rounds; round++) {
    for (const phase of ["quiet", "flood"] as const) {
      const until = Date.now() + phaseMs;
      const [victimResult, statuses] = await Promise.all([
        victimTraffic(until),
        phase === "flood" ? flood(until) : Promise.resolve(new Map<number, number>()),
      ]);
      (phase === "quiet" ? quiet : flooded).push(...victimResult.latencies);
      victimFailures += victimResult.failures;
      for (const [status, n] of statuses) floodStatuses.set(status, (floodStatuses.get(status) ?? 0) + n);
      const sorted = [...victimResult.latencies].sort((a, b) => a - b);
      console.log(
        `round ${round} ${phase.padEnd(5)}: victim p50 ${quantile(sorted, 0.5).toFixed(1)} ms, ` +
          `p99 ${quantile(sorted, 0.99).toFixed(1)} ms over ${sorted.length} calls`,
      );
    }
  }

  quiet.sort((a, b) => a - b);
  flooded.sort((a, b) => a - b);
  const floodTotal = [...floodStatuses.values()].reduce((a, b) => a + b, 0);
  console.log("");
  console.log(
    `victim calls           quiet ${quiet.length}, during flood ${flooded.length}, non-200 ${victimFailures}`,
  );
  for (const q of [0.5, 0.99]) {
    const a = quantile(quiet, q);
    const b = quantile(flooded, q);
    console.log(
      `victim p${q * 100}`.padEnd(23),
      `quiet ${a.toFixed(1)} ms, flood ${b.toFixed(1)} ms, ratio ${(b / a).toFixed(2)}`,
    );
  }
  const byStatus = [...floodStatuses.entries()].map(([s, n]) => `${s}: ${n}`).join(", ");
  console.log(`flood                  ${floodTotal} link downloads in ${(rounds * phaseMs) / 1000} s (${byStatus})`);
} finally {
  await server.stop();
}
