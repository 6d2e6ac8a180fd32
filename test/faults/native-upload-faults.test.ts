// A standing fault suite for native uploads (issue 17). fast-check generates schedules of what a client on
// a bad network, a dying Worker, R2 and D1 do to one upload: part PUTs (good, with a digest, with a wrong
// body under the right digest, cut short, the wrong size), two writes of one part at once, completes,
// aborts, a Worker that dies after R2 took its bytes, a Worker that begins a completion and then
// assembles, finishes, gives up or never comes back, a storage fault behind the session's back, the
// completion window or the TTL passing, alarms, and D1 going down and up. Every schedule runs against the
// real app (`exports.default.fetch`) and the real objects; after EVERY step the invariants are checked:
//
//   I1  the session's part list matches R2: every part it lists as recorded has the ETag R2 returned for
//       the last write of that number that reached uploadPart (the model below tracks what R2 holds);
//   I2  no state without a way out: `completing` only while a Worker holds the completion, never past a
//       bounded deadline, always with an alarm armed to resolve it; every other state takes the client's
//       next step (parts, complete, abort) or is terminal with its reservation given back;
//   I3  the ledger equals live files plus active reservations;
//
// and at the end of each schedule:
//
//   I4  the upload can still be finished: re-sending what the session says is missing and completing
//       gives a file byte-identical to what was meant (or, only when a stale Worker consumed the
//       multipart upload, an abort releases everything);
//   I5  D1 converges to the objects (upload row, quota row, file row), once D1 is back;
//   I6  R2 holds an object at the upload's key exactly when the upload completed.
//
// The seed is fixed so CI runs the same schedules every time; VITE_FAULTS_SEED (environment) explores others.
// A failure prints fast-check's seed, path and shrunk counterexample (the schedule), and the step that
// broke an invariant. With the fix of issue 17 item 1 reverted, this suite fails on I1 right after a
// re-send with a wrong body (see the note in the issue's report).
import { env, runDurableObjectAlarm, runInDurableObject } from "cloudflare:test";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { accountFor, sessionFor } from "../../objects/stubs";
import type { CompletionStep } from "../../objects/upload-session/contract";
import type { SessionView, UploadStatus } from "../../src/core/domain";
import type { Outcome } from "../../src/core/outcome";
import { createApp } from "../../src/http/app";
import {
  adminHeaders,
  callJson,
  MiB,
  putPart,
  type Reply,
  randomBytes,
  sha256Hex,
  type TestInit,
  tokenFor,
} from "../support/http";
import { drain, runAlarmAfter, testMeta, testPolicy } from "../support/objects";

/** Vite passes `VITE_*` variables of the environment into the runtime: `VITE_FAULTS_SEED=7 npx vitest …`. */
const SEED = Number((import.meta as { env?: Record<string, string | undefined> }).env?.VITE_FAULTS_SEED ?? 1717);
/**
 * Random schedules per property, after its named ones: with those, enough to hit every fault the suite
 * stands for (checked at the end), few enough that both properties take well under a minute on a 2-core
 * machine.
 */
const PART_RUNS = 8;
const COMPLETION_RUNS = 8;
/** R2's smallest part: every part but the last is exactly this. */
const PART = 5 * MiB;

type PartKind = "good" | "goodDigest" | "wrongBody" | "cutShort" | "wrongSize";
type Action =
  | { t: "put"; n: number; kind: PartKind }
  | { t: "putTwice"; n: number; kinds: [PartKind, PartKind] }
  | { t: "resendMissing" }
  | { t: "complete" }
  | { t: "completeWhileR2Fails" }
  | { t: "abort" }
  | { t: "alarm" }
  | { t: "workerDiesAfterUpload"; n: number }
  | { t: "r2Overwrites"; n: number }
  | { t: "workerBegins" }
  | { t: "workerAssembles" }
  | { t: "workerReports" }
  | { t: "timePasses" }
  | { t: "d1Down"; table: "multipart_uploads" | "user_quotas" }
  | { t: "d1Up" };

/** What happens around a Worker's completion: its own steps, the window passing, the client retrying. */
type WorkerStep = "workerAssembles" | "timePasses" | "workerReports" | "complete";

/** A Worker's completion, woven into the schedule: it begins at `at`, then does `steps` in that order. */
interface WorkerScript {
  at: number;
  steps: WorkerStep[];
  gaps: number[];
}

/** D1 refuses one table's writes from step `from` for `length` steps (to the end, if that is sooner). */
interface Outage {
  table: "multipart_uploads" | "user_quotas";
  from: number;
  length: number;
}

interface Scenario {
  parts: 2 | 3;
  lastPart: number;
  sha256: boolean;
  prefilled: boolean;
  actions: Action[];
  worker: WorkerScript | null;
  outage: Outage | null;
}

const partNumber = fc.integer({ min: 1, max: 3 });
const kind = fc.constantFrom<PartKind>("good", "goodDigest", "wrongBody", "cutShort", "wrongSize");
/** An action arbitrary from weights per action (0 or absent: never). */
function actions(w: Partial<Record<Action["t"], number>>): fc.Arbitrary<Action> {
  const all: [Action["t"], fc.Arbitrary<Action>][] = [
    ["put", fc.record({ t: fc.constant("put" as const), n: partNumber, kind })],
    ["putTwice", fc.record({ t: fc.constant("putTwice" as const), n: partNumber, kinds: fc.tuple(kind, kind) })],
    ["resendMissing", fc.constant({ t: "resendMissing" as const })],
    ["complete", fc.constant({ t: "complete" as const })],
    ["completeWhileR2Fails", fc.constant({ t: "completeWhileR2Fails" as const })],
    ["abort", fc.constant({ t: "abort" as const })],
    ["alarm", fc.constant({ t: "alarm" as const })],
    ["workerDiesAfterUpload", fc.record({ t: fc.constant("workerDiesAfterUpload" as const), n: partNumber })],
    ["r2Overwrites", fc.record({ t: fc.constant("r2Overwrites" as const), n: partNumber })],
    ["workerBegins", fc.constant({ t: "workerBegins" as const })],
    ["workerAssembles", fc.constant({ t: "workerAssembles" as const })],
    ["workerReports", fc.constant({ t: "workerReports" as const })],
    ["timePasses", fc.constant({ t: "timePasses" as const })],
    [
      "d1Down",
      fc.record({
        t: fc.constant("d1Down" as const),
        table: fc.constantFrom("multipart_uploads" as const, "user_quotas" as const),
      }),
    ],
    ["d1Up", fc.constant({ t: "d1Up" as const })],
  ];
  return fc.oneof(...all.filter(([t]) => (w[t] ?? 0) > 0).map(([t, arbitrary]) => ({ weight: w[t] ?? 0, arbitrary })));
}

const common = {
  parts: fc.constantFrom(2 as const, 2 as const, 3 as const),
  lastPart: fc.integer({ min: 1, max: 4096 }),
  sha256: fc.boolean(),
  // Half the schedules run partly (or to the end) with one D1 table refusing writes.
  outage: fc.option(
    fc.record({
      table: fc.constantFrom("multipart_uploads" as const, "user_quotas" as const),
      from: fc.nat({ max: 6 }),
      length: fc.integer({ min: 1, max: 10 }),
    }),
    { freq: 2 },
  ),
};

/**
 * Parts, re-sends and what can go wrong with them (issue 17 item 1): a client on a flaky network sending,
 * re-sending and completing, Workers that die after R2 took their bytes, storage faults, D1 outages.
 */
const partSchedules: fc.Arbitrary<Scenario> = fc.record({
  ...common,
  // Most schedules start with every part sent once (a client resuming, retrying); the rest from nothing.
  prefilled: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  actions: fc.array(
    actions({
      put: 10,
      putTwice: 3,
      resendMissing: 2,
      complete: 4,
      workerDiesAfterUpload: 2,
      r2Overwrites: 2,
      alarm: 1,
      abort: 1,
    }),
    { minLength: 2, maxLength: 10 },
  ),
  worker: fc.constant(null),
});

/**
 * Completions and what can go wrong with them (issue 17 item 2, review 17c): every schedule weaves in one
 * Worker's completion, its steps in every order (dies after beginning, dies after assembling, is
 * overtaken by the completion window, assembles after the hand-back, ...), among client requests,
 * storage faults, alarms and D1 outages.
 */
const completionSchedules: fc.Arbitrary<Scenario> = fc.record({
  ...common,
  prefilled: fc.constant(true),
  actions: fc.array(
    actions({
      put: 3,
      resendMissing: 2,
      complete: 4,
      completeWhileR2Fails: 2,
      r2Overwrites: 2,
      timePasses: 2,
      workerBegins: 1,
      workerAssembles: 1,
      workerReports: 1,
      alarm: 1,
      abort: 1,
    }),
    { minLength: 1, maxLength: 6 },
  ),
  worker: fc.record({
    at: fc.nat({ max: 3 }),
    steps: fc.oneof(
      // Overtaken by the window, then assembles after the hand-back and finishes (review 17c).
      fc.constant<WorkerStep[]>(["timePasses", "workerAssembles", "workerReports"]),
      // Assembles, then dies: the alarm finds the object.
      fc.constant<WorkerStep[]>(["workerAssembles", "timePasses", "workerReports"]),
      // The client retries its complete while the Worker is slow (the retry drives the same completion).
      fc.constant<WorkerStep[]>(["complete", "workerAssembles", "workerReports"]),
      fc.shuffledSubarray<WorkerStep>(["workerAssembles", "timePasses", "workerReports", "complete"]),
    ),
    gaps: fc.array(fc.nat({ max: 2 }), { minLength: 3, maxLength: 3 }),
  }),
});

/** A schedule written out: the faults the suite stands for, run first with every seed (fast-check examples). */
function named(sc: Partial<Scenario> & Pick<Scenario, "actions">): Scenario {
  return { parts: 2, lastPart: 1000, sha256: false, prefilled: true, worker: null, outage: null, ...sc };
}

const PART_EXAMPLES: Scenario[] = [
  // Issue 17 item 1, as reported: parts 1 and 2 sent, part 1 re-sent with a wrong body under the digest
  // of the original bytes, then completed; then re-sent right and completed again (byte-identical).
  named({
    sha256: true,
    actions: [
      { t: "put", n: 1, kind: "wrongBody" },
      { t: "complete" },
      { t: "put", n: 1, kind: "good" },
      { t: "complete" },
    ],
  }),
  // Two writes of one part at once, during a D1 outage.
  named({
    parts: 3,
    actions: [{ t: "putTwice", n: 2, kinds: ["good", "good"] }, { t: "resendMissing" }, { t: "complete" }],
    outage: { table: "multipart_uploads", from: 0, length: 10 },
  }),
  // A Worker that dies after R2 took its bytes; a re-send cut short; the quota table down meanwhile.
  named({
    actions: [
      { t: "workerDiesAfterUpload", n: 2 },
      { t: "complete" },
      { t: "put", n: 1, kind: "cutShort" },
      { t: "resendMissing" },
      { t: "complete" },
    ],
    outage: { table: "user_quotas", from: 1, length: 3 },
  }),
];

const COMPLETION_EXAMPLES: Scenario[] = [
  // Review 17c: the window passes with nothing assembled (handed back); the slow Worker then assembles
  // and reports: it finishes.
  named({
    actions: [],
    worker: { at: 0, steps: ["timePasses", "workerAssembles", "workerReports"], gaps: [0, 0, 0] },
    outage: { table: "multipart_uploads", from: 0, length: 10 },
  }),
  // The Worker assembles and dies: the alarm finishes it (no SHA-256) or fails it (a SHA-256 to verify).
  named({ actions: [], worker: { at: 0, steps: ["workerAssembles", "timePasses", "workerReports"], gaps: [0, 0, 0] } }),
  named({
    sha256: true,
    actions: [],
    worker: { at: 0, steps: ["workerAssembles", "timePasses", "workerReports"], gaps: [0, 0, 0] },
  }),
  // The client retries its complete while the Worker is slow; a storage fault makes R2 refuse a
  // completion (502, handed back), and the part is re-sent.
  named({ actions: [], worker: { at: 0, steps: ["complete", "workerAssembles", "workerReports"], gaps: [0, 0, 0] } }),
  named({
    actions: [{ t: "r2Overwrites", n: 1 }, { t: "complete" }, { t: "resendMissing" }, { t: "complete" }],
  }),
  // R2 fails to assemble (a transient error) for a client's complete, then for the retry of a Worker's.
  named({ sha256: true, actions: [{ t: "completeWhileR2Fails" }, { t: "complete" }] }),
  named({ actions: [{ t: "completeWhileR2Fails" }], worker: { at: 0, steps: ["workerReports"], gaps: [1, 0, 0] } }),
  named({
    actions: [{ t: "r2Overwrites", n: 2 }, { t: "complete" }, { t: "resendMissing" }, { t: "complete" }],
    worker: { at: 1, steps: [], gaps: [0, 0, 0] },
  }),
];

/** The scenario's actions with its Worker's steps woven in. */
function scheduleOf(sc: Scenario): Action[] {
  const schedule = [...sc.actions];
  if (sc.worker) {
    // A client that completes sends what is missing first; its complete request's Worker is this one.
    let at = Math.min(sc.worker.at, schedule.length);
    schedule.splice(at, 0, { t: "resendMissing" }, { t: "workerBegins" });
    at++;
    const { steps, gaps } = sc.worker;
    steps.forEach((t, i) => {
      at = Math.min(at + 1 + gaps[i], schedule.length);
      schedule.splice(at, 0, { t });
    });
  }
  if (sc.outage) {
    const from = Math.min(sc.outage.from, schedule.length);
    schedule.splice(from, 0, { t: "d1Down", table: sc.outage.table });
    const to = from + 1 + sc.outage.length;
    if (to < schedule.length) schedule.splice(to, 0, { t: "d1Up" });
  }
  return schedule;
}

/** What R2's multipart upload holds under one part number, as far as the test can know. */
type R2Part =
  /** The last write that reached uploadPart was one of these (a good write; two when two overlapped). */
  | { kind: "known"; etags: string[] }
  /** A write whose ETag the client never saw reached it (a wrong body, a dead Worker's write). */
  | { kind: "unknown" }
  /** A storage fault wrote over it behind the session's back: the session cannot know, so I1 skips it. */
  | { kind: "overwritten" };

/** A simulated Worker in the middle of a completion it began. */
interface Worker {
  step: Extract<CompletionStep, { kind: "assemble" }>;
  /** null: still assembling; an etag: R2 assembled the object; "failed": R2 refused. */
  assembled: { etag: string } | "failed" | null;
}

interface Model {
  status: UploadStatus;
  r2: Map<number, R2Part>;
  /** R2 completed the multipart upload: the object exists and the parts are gone from R2. */
  assembled: boolean;
  worker: Worker | null;
  d1Down: string | null;
  fileId: string | null;
}

const OPEN: readonly UploadStatus[] = ["active", "completing"];

/** What the schedules exercised, counted across runs: the suite checks it covered the faults it is for. */
const seen = new Map<string, number>();
const saw = (what: string) => seen.set(what, (seen.get(what) ?? 0) + 1);

/** One schedule against one new upload of a new user. */
class Run {
  readonly log: string[] = [];
  readonly model: Model = {
    status: "active",
    r2: new Map(),
    assembled: false,
    worker: null,
    d1Down: null,
    fileId: null,
  };
  private constructor(
    readonly sc: Scenario,
    readonly userId: string,
    readonly token: string,
    readonly uploadId: string,
    readonly bytes: Uint8Array,
    readonly sha256: string,
  ) {}

  static async start(sc: Scenario, index: number): Promise<Run> {
    const userId = `faults-${index}-${crypto.randomUUID().slice(0, 8)}`;
    const token = await tokenFor(userId);
    const bytes = randomBytes(PART * (sc.parts - 1) + sc.lastPart);
    const sha256 = await sha256Hex(bytes);
    const created = await callJson("/v1/uploads", {
      method: "POST",
      token,
      json: { filename: "faults.bin", size: bytes.length, ...(sc.sha256 ? { sha256 } : {}) },
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ partSize: PART, partCount: sc.parts });
    return new Run(sc, userId, token, created.body.uploadId, bytes, sha256);
  }

  get session() {
    return sessionFor(env, this.uploadId);
  }
  get account() {
    return accountFor(env, this.userId);
  }
  get partCount(): number {
    return this.sc.parts;
  }
  /** The part number an action names, folded into the plan (1..partCount). */
  n(raw: number): number {
    return ((raw - 1) % this.partCount) + 1;
  }
  part(n: number): Uint8Array {
    return this.bytes.subarray((n - 1) * PART, n * PART);
  }
  readonly #digests = new Map<number, string>();
  /** Part `n`'s Content-Digest (RFC 9530), computed once. */
  async digestOf(n: number): Promise<string> {
    let digest = this.#digests.get(n);
    if (!digest) {
      digest = `sha-256=:${b64(new Uint8Array(await crypto.subtle.digest("SHA-256", this.part(n))))}:`;
      this.#digests.set(n, digest);
    }
    return digest;
  }

  async view(): Promise<SessionView> {
    const view = await this.session.view(this.userId);
    if (!view.ok) throw new Error(`no view: ${JSON.stringify(view)}`);
    return view.value;
  }
  async r2Ids(): Promise<{ key: string; mpu: string | null; attempts: number }> {
    return runInDurableObject(this.session, (_o, state) => {
      const row = state.storage.sql
        .exec<{ r2_key: string; r2_upload_id: string | null; completion_attempts: number }>(
          "SELECT r2_key, r2_upload_id, completion_attempts FROM session",
        )
        .one();
      return { key: row.r2_key, mpu: row.r2_upload_id, attempts: row.completion_attempts };
    });
  }

  // ---- the client's requests --------------------------------------------------------------------------

  /** One write of part `n` as `kind`; returns the response. */
  async write(n: number, kind: PartKind) {
    const part = this.part(n);
    const digest = kind === "goodDigest" || kind === "wrongBody" ? await this.digestOf(n) : "";
    switch (kind) {
      case "good":
        return putPart(this.uploadId, n, part, this.token);
      case "goodDigest":
        return putPart(this.uploadId, n, part, this.token, { "Content-Digest": digest });
      case "wrongBody":
        return putPart(this.uploadId, n, randomBytes(part.length), this.token, { "Content-Digest": digest });
      case "wrongSize":
        return putPart(this.uploadId, n, randomBytes(part.length + 1), this.token);
      case "cutShort":
        return callJson(`/v1/uploads/${this.uploadId}/parts/${n}`, {
          method: "PUT",
          token: this.token,
          headers: { "Content-Length": String(part.length) },
          body: cutShort(part.subarray(0, Math.min(part.length - 1, 64 * 1024))),
          // @ts-expect-error: `duplex` is required by fetch for a streamed request body.
          duplex: "half",
        });
    }
  }

  async put(n: number, kind: PartKind): Promise<void> {
    const recorded = (await this.view()).parts.some((p) => p.partNumber === n);
    const res = await this.write(n, kind);
    if (recorded && this.model.status === "active") saw(`re-send of a recorded part: ${kind}`);
    const status = this.model.status;
    if (!OPEN.includes(status) || status === "completing") {
      expect(res.status, this.at("a part for a closed upload")).toBe(status === "expired" ? 410 : 409);
      return;
    }
    if (kind === "wrongSize") {
      expect(res.body.error?.code, this.at("wrong size")).toBe("part_size_mismatch");
      return;
    }
    if (this.model.assembled) {
      // A stale Worker consumed the multipart upload: no write can reach it any more.
      expect(res.status, this.at("a part after the multipart upload was consumed")).toBe(400);
      this.model.r2.set(n, { kind: "unknown" });
      return;
    }
    if (kind === "good" || kind === "goodDigest") {
      expect(res.status, this.at(`part ${n}: ${JSON.stringify(res.body)}`)).toBe(200);
      this.model.r2.set(n, { kind: "known", etags: [res.body.etag] });
    } else if (kind === "wrongBody") {
      expect(res.body.error?.code, this.at("a wrong body")).toBe("digest_mismatch");
      this.model.r2.set(n, { kind: "unknown" });
    } else {
      // A body cut short never completes uploadPart: R2 keeps what it had.
      expect(res.body.error?.code, this.at("a body cut short")).toBe("incomplete_body");
    }
  }

  /** Two writes of one part at once: R2 keeps whichever finished last, which the client cannot see. */
  async putTwice(n: number, kinds: [PartKind, PartKind]): Promise<void> {
    const responses = await Promise.all(kinds.map((k) => this.write(n, k)));
    const status = this.model.status;
    if (status !== "active") {
      for (const res of responses)
        expect(res.status, this.at("parts for a closed upload")).toBe(status === "expired" ? 410 : 409);
      return;
    }
    const allowed = ["part_write_conflict", "digest_mismatch", "incomplete_body", "part_size_mismatch"];
    for (const res of responses) {
      if (res.status !== 200)
        expect(allowed, this.at(`overlap: ${JSON.stringify(res.body)}`)).toContain(res.body.error?.code);
    }
    for (const res of responses) saw(`overlapping writes: ${res.status === 200 ? "200" : res.body.error?.code}`);
    const etags = responses.filter((r) => r.status === 200).map((r) => r.body.etag as string);
    const reached = kinds.some((k) => k !== "wrongSize" && k !== "cutShort");
    if (this.model.assembled) this.model.r2.set(n, { kind: "unknown" });
    else if (etags.length > 0) this.model.r2.set(n, { kind: "known", etags });
    else if (reached) this.model.r2.set(n, { kind: "unknown" });
  }

  /** The client asks what is missing (GET) and sends it: what a client does before it completes. */
  async resendMissing(): Promise<void> {
    if (this.model.status !== "active") return;
    for (const n of (await this.view()).missingParts) await this.put(n, "good");
  }

  /**
   * POST …/complete. `r2Fails`: through an app whose R2 fails to assemble (a transient storage error);
   * otherwise through the real app.
   */
  async complete(r2Fails = false): Promise<void> {
    const before = await this.view();
    const path = `/v1/uploads/${this.uploadId}/complete`;
    const res = r2Fails
      ? await callWithFaultyR2(path, { method: "POST", token: this.token })
      : await callJson(path, { method: "POST", token: this.token });
    const status = this.model.status;
    saw(`complete${r2Fails ? " while R2 fails" : ""} (${status}): ${res.status}`);
    if (status === "completed") {
      expect(res.status, this.at("complete again")).toBe(200);
      return;
    }
    if (!OPEN.includes(status)) {
      expect(res.status, this.at(`complete a ${status} upload`)).toBe(status === "expired" ? 410 : 409);
      return;
    }
    if (status === "active" && before.missingParts.length > 0) {
      expect(res.status, this.at("complete with parts missing")).toBe(409);
      expect(res.body.error).toMatchObject({ code: "parts_missing", details: { missingParts: before.missingParts } });
      return;
    }
    const overwritten = before.parts.some((p) => this.model.r2.get(p.partNumber)?.kind === "overwritten");
    if (this.model.assembled) {
      // The object exists (a Worker assembled it): any completion finds it and finishes.
      expect(res.status, this.at(`complete an assembled upload: ${JSON.stringify(res.body)}`)).toBe(200);
      await this.completed(res.body.file.id, res.body.file.etag);
    } else if (r2Fails) {
      // A transient storage error: handed back as it was, never left completing (issue 17 item 2).
      expect(res.status, this.at(`complete while R2 fails: ${JSON.stringify(res.body)}`)).toBe(502);
      expect(res.body.error.code).toBe("storage_error");
      this.model.status = "active";
      expect((await this.view()).parts, this.at("a transient failure keeps the parts")).toEqual(before.parts);
    } else if (overwritten) {
      // R2 rejected the parts without saying which: handed back with every part missing, to send again.
      const all = Array.from({ length: this.partCount }, (_, i) => i + 1);
      expect(res.status, this.at(`complete over a storage fault: ${JSON.stringify(res.body)}`)).toBe(409);
      expect(res.body.error).toMatchObject({ code: "parts_missing", details: { missingParts: all } });
      this.model.status = "active";
    } else {
      expect(res.status, this.at(`complete: ${JSON.stringify(res.body)}`)).toBe(200);
      await this.completed(res.body.file.id, res.body.file.etag);
    }
  }

  /** The upload completed: its object holds exactly the bytes meant. */
  async completed(fileId: string, etag: string): Promise<void> {
    this.model.status = "completed";
    this.model.fileId = fileId;
    const { key } = await this.r2Ids();
    const object = await env.BUCKET.get(key);
    expect(object, this.at("the completed file's object")).not.toBeNull();
    expect(object?.etag).toBe(etag);
    const digest = new crypto.DigestStream("SHA-256");
    await object?.body.pipeTo(digest);
    expect(hex(new Uint8Array(await digest.digest)), this.at("the file is byte-identical")).toBe(this.sha256);
  }

  async abort(): Promise<void> {
    const res = await callJson(`/v1/uploads/${this.uploadId}`, { method: "DELETE", token: this.token });
    const status = this.model.status;
    if (status === "active" || status === "aborted") {
      expect(res.status, this.at("abort")).toBe(204);
      this.model.status = "aborted";
    } else {
      expect(res.status, this.at(`abort a ${status} upload`)).toBe(status === "expired" ? 410 : 409);
    }
  }

  // ---- Workers that die, R2 and time -------------------------------------------------------------------

  /** A Worker took a ticket and streamed a (wrong) body into R2, then died before reporting anything. */
  async workerDiesAfterUpload(n: number): Promise<void> {
    const ticket = await this.session.authorizePart(this.userId, n, this.part(n).length);
    if (!ticket.ok) {
      expect(this.model.status, this.at("a ticket refused")).not.toBe("active");
      return;
    }
    expect(this.model.status).toBe("active");
    saw("a Worker dies after R2 took its bytes");
    this.model.r2.set(n, { kind: "unknown" });
    await env.BUCKET.resumeMultipartUpload(ticket.value.r2Key, ticket.value.r2UploadId)
      .uploadPart(n, randomBytes(this.part(n).length))
      .catch(() => {});
  }

  /** A storage fault: part `n` is written over in R2 without the session (the one thing it cannot see). */
  async r2Overwrites(n: number): Promise<void> {
    const { key, mpu } = await this.r2Ids();
    if (!mpu || this.model.assembled) return;
    const wrote = await env.BUCKET.resumeMultipartUpload(key, mpu)
      .uploadPart(n, randomBytes(this.part(n).length))
      .then(
        () => true,
        () => false,
      );
    if (wrote) this.model.r2.set(n, { kind: "overwritten" });
  }

  async workerBegins(): Promise<void> {
    if (this.model.worker) return;
    const before = await this.view();
    // The RPC type drops a refusal's `details?: unknown`; the value is an Outcome all the same.
    const step = (await this.session.beginCompletion(this.userId)) as unknown as Outcome<CompletionStep>;
    if (!step.ok) {
      if (this.model.status === "active") {
        expect(step.error.code, this.at("begin with parts missing")).toBe("parts_missing");
        expect(before.missingParts.length).toBeGreaterThan(0);
      }
    } else if (step.value.kind === "assemble") {
      saw(`a Worker begins (${this.model.status})`);
      expect(OPEN, this.at("a completion begun")).toContain(this.model.status);
      this.model.worker = { step: step.value, assembled: null };
      this.model.status = "completing";
    } else {
      expect(this.model.status).toBe("completed");
    }
  }

  async workerAssembles(): Promise<void> {
    const worker = this.model.worker;
    if (!worker || worker.assembled !== null || !worker.step.r2UploadId) return;
    const { r2Key, r2UploadId, parts } = worker.step;
    try {
      const object = await env.BUCKET.resumeMultipartUpload(r2Key, r2UploadId).complete(parts);
      worker.assembled = { etag: object.etag };
      this.model.assembled = true;
      saw(`a Worker assembles (${this.model.status})`);
    } catch {
      saw(`R2 refuses a Worker's assembly (${this.model.status})`);
      const existing = await env.BUCKET.head(r2Key);
      worker.assembled = existing ? { etag: existing.etag } : "failed";
    }
  }

  /** The Worker reports: finishes what it assembled, or gives up what R2 refused. */
  async workerReports(): Promise<void> {
    const worker = this.model.worker;
    if (!worker || worker.assembled === null) return;
    this.model.worker = null;
    const { attempts } = await this.r2Ids();
    const status = this.model.status;
    let assembled = worker.assembled;
    let checksum: "verified" | "not_declared" = "not_declared";
    if (assembled !== "failed" && this.sc.sha256) {
      // The Worker reads the object back through a digest; an object gone since (cleaned up) fails that.
      const object = await env.BUCKET.head(worker.step.r2Key);
      if (object) checksum = "verified";
      else assembled = "failed";
    }
    if (assembled === "failed") {
      const back = await this.session.abandonCompletion(this.userId, worker.step.attempt);
      expect(back.ok).toBe(true);
      if (status === "completing" && worker.step.attempt === attempts) this.model.status = "active";
      return;
    }
    saw(`a Worker finishes (${status})`);
    const done = await this.session.finishCompletion(
      this.userId,
      { etag: assembled.etag, checksum, attempt: worker.step.attempt },
      testMeta,
    );
    if (OPEN.includes(status) || status === "completed") {
      expect(done, this.at(`a Worker finishes (${status})`)).toMatchObject({ ok: true });
      if (done.ok && status !== "completed") await this.completed(done.value.id, done.value.etag);
    } else {
      expect(done.ok, this.at(`a Worker finishes a ${status} upload`)).toBe(false);
    }
  }

  /** The completion window or the TTL passes: the deadline moves into the past, and the alarm runs. */
  async timePasses(): Promise<void> {
    await runInDurableObject(this.session, (_o, state) => {
      state.storage.sql.exec("UPDATE session SET expires_at = ?", Date.now() - 1);
    });
    await runAlarmAfter(this.session);
    // The alarm is idempotent; this makes sure one ran after the change whatever the runtime did.
    await this.session.sweep();
    const status = this.model.status;
    saw(`time passes (${status}${status === "completing" ? `, assembled: ${this.model.assembled}` : ""})`);
    if (status === "active") this.model.status = "expired";
    else if (status === "completing") {
      if (!this.model.assembled) this.model.status = "active";
      else if (this.sc.sha256) this.model.status = "failed";
      else {
        const view = await this.view();
        expect(view.file, this.at("finished by the alarm")).not.toBeNull();
        if (view.file) await this.completed(view.file.id, view.file.etag);
      }
    }
  }

  async alarm(): Promise<void> {
    await runDurableObjectAlarm(this.session);
  }

  async d1Down(table: string): Promise<void> {
    if (this.model.d1Down) return;
    await env.DB.exec(`ALTER TABLE ${table} RENAME TO ${table}_offline`);
    saw(`D1 down: ${table}`);
    this.model.d1Down = table;
  }

  async d1Up(): Promise<void> {
    const table = this.model.d1Down;
    if (!table) return;
    await env.DB.exec(`ALTER TABLE ${table}_offline RENAME TO ${table}`);
    this.model.d1Down = null;
  }

  async apply(a: Action): Promise<void> {
    switch (a.t) {
      case "put":
        return this.put(this.n(a.n), a.kind);
      case "putTwice":
        return this.putTwice(this.n(a.n), a.kinds);
      case "resendMissing":
        return this.resendMissing();
      case "complete":
        return this.complete();
      case "completeWhileR2Fails":
        return this.complete(true);
      case "abort":
        return this.abort();
      case "alarm":
        return this.alarm();
      case "workerDiesAfterUpload":
        return this.workerDiesAfterUpload(this.n(a.n));
      case "r2Overwrites":
        return this.r2Overwrites(this.n(a.n));
      case "workerBegins":
        return this.workerBegins();
      case "workerAssembles":
        return this.workerAssembles();
      case "workerReports":
        return this.workerReports();
      case "timePasses":
        return this.timePasses();
      case "d1Down":
        return this.d1Down(a.table);
      case "d1Up":
        return this.d1Up();
    }
  }

  // ---- invariants ----------------------------------------------------------------------------------

  at(what: string): string {
    return `${what}\n  after: ${this.log.join(" → ")}`;
  }

  async checkStep(): Promise<void> {
    const view = await this.view();
    expect(view.status, this.at("status")).toBe(this.model.status);
    // I1: every part the session lists is what R2 holds under that number.
    if (!this.model.assembled) {
      for (const p of view.parts) {
        const r2 = this.model.r2.get(p.partNumber);
        if (r2?.kind === "overwritten") continue;
        const holds = r2?.kind === "known" ? `one of ${r2.etags.join(", ")}` : (r2?.kind ?? "nothing");
        expect(
          r2?.kind === "known" && r2.etags.includes(p.etag),
          this.at(`I1: part ${p.partNumber} is recorded with ETag ${p.etag}, but R2's last write of it is ${holds}`),
        ).toBe(true);
      }
    }
    // I2: completing only while a Worker holds it, with a bounded deadline and an alarm to resolve it.
    if (view.status === "completing") {
      expect(this.model.worker, this.at("I2: completing with no Worker completing it")).not.toBeNull();
      const bound = 5 * 60_000 + 60_000 + 1000;
      expect(view.expiresAt - Date.now(), this.at("I2: completing for longer than its window")).toBeLessThan(bound);
      // While the runtime runs an alarm, none is set until the run re-arms it at its end: ask again.
      let alarm: number | null = null;
      for (let i = 0; i < 50 && alarm === null; i++) {
        alarm = await runInDurableObject(this.session, (_o, state) => state.storage.getAlarm());
        if (alarm === null) await new Promise((r) => setTimeout(r, 20));
      }
      expect(alarm !== null && alarm <= view.expiresAt, this.at("I2: completing without an alarm")).toBe(true);
    }
    // I3: the ledger holds exactly the live file or the open upload's reservation.
    await this.settleLedger();
    const usage = await this.account.usage(this.userId, testPolicy({}));
    const open = OPEN.includes(view.status);
    const done = view.status === "completed";
    expect(usage, this.at("I3: the ledger")).toMatchObject({
      usedBytes: done ? this.bytes.length : 0,
      reservedBytes: open ? this.bytes.length : 0,
      fileCount: done ? 1 : 0,
      activeUploads: open ? 1 : 0,
    });
  }

  /** Waits until the session's ledger messages are delivered (its alarm may be running meanwhile). */
  async settleLedger(): Promise<void> {
    for (let i = 0; i < 100; i++) {
      if (!(await this.session.pendingCheckpoints()).ledger) return;
      await this.session.sweep();
    }
    throw new Error(this.at("the ledger messages were never delivered"));
  }

  /** I4: whatever the schedule left, the upload can be finished (or, only once the parts are gone, aborted). */
  async finish(): Promise<void> {
    this.log.push("(finish)");
    if (this.model.worker?.assembled) await this.workerReports();
    this.model.worker = null;
    if (this.model.status === "completing") await this.timePasses();
    for (let round = 0; round < 3 && this.model.status === "active"; round++) {
      const view = await this.view();
      const resend = round === 0 ? view.missingParts : Array.from({ length: this.partCount }, (_, i) => i + 1);
      for (const n of resend) await this.put(n, "good");
      await this.complete();
      await this.checkStep();
    }
    if (this.model.status === "active") {
      // Only a stale Worker's assembly, never reported, can leave parts that cannot be sent again.
      expect(this.model.assembled, this.at("I4: the upload cannot be finished")).toBe(true);
      await this.abort();
    }
    await this.checkStep();
  }

  /** I5 and I6: with D1 back and every outbox delivered, D1 and R2 agree with the objects. */
  async converge(): Promise<void> {
    await this.d1Up();
    for (const stub of [this.session, this.account] as DurableObjectStub[]) {
      await runInDurableObject(stub, (_o, state) => {
        // Time passes for every backoff (an alarm time must be positive).
        state.storage.sql.exec("UPDATE outbox SET next_attempt_at = ?", Date.now());
      });
    }
    await drain(this.session);
    await drain(this.account);
    const view = await this.view();
    const version = await runInDurableObject(
      this.session,
      (_o, state) => state.storage.sql.exec<{ v: number }>("SELECT version AS v FROM session").one().v,
    );
    const row = await env.DB.prepare("SELECT * FROM multipart_uploads WHERE upload_id = ?").bind(this.uploadId).first();
    expect(row, this.at("I5: the upload row")).toMatchObject({
      status: view.status,
      parts_uploaded: view.parts.length,
      bytes_received: view.bytesReceived,
      version,
    });
    const usage = await this.account.usage(this.userId, testPolicy({}));
    const quota = await env.DB.prepare("SELECT * FROM user_quotas WHERE user_id = ?").bind(this.userId).first();
    expect(quota, this.at("I5: the quota row")).toMatchObject({
      used_bytes: usage.usedBytes,
      reserved_bytes: usage.reservedBytes,
      file_count: usage.fileCount,
      active_uploads: usage.activeUploads,
    });
    const files = await env.DB.prepare("SELECT id, status, file_size FROM files WHERE user_id = ?")
      .bind(this.userId)
      .all();
    const live =
      view.status === "completed" ? [{ id: view.file?.id, status: "active", file_size: this.bytes.length }] : [];
    expect(files.results, this.at("I5: the files rows")).toEqual(live);
    const { key } = await this.r2Ids();
    const object = await env.BUCKET.head(key);
    expect(object !== null, this.at("I6: an object exactly when completed")).toBe(view.status === "completed");
  }
}

describe("native uploads under faults (issue 17)", () => {
  beforeAll(async () => {
    // Parts of R2's minimum size keep each schedule small; rate limits out of the way of the schedules.
    const res = await callJson("/v1/admin/settings", {
      method: "PUT",
      headers: adminHeaders({ "If-Match": "*" }),
      json: { partSizeBytes: PART, requestsPerSecond: 100_000, burst: 1_000_000 },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  });

  it("parts and re-sends: the part list stays true to R2, nothing strands, D1 converges", {
    timeout: 300_000,
  }, async () => {
    await check("parts", partSchedules, PART_EXAMPLES, PART_RUNS, [
      "re-send of a recorded part: wrongBody",
      "overlapping writes",
      "a Worker dies after R2 took its bytes",
      "complete (active): 200",
      "complete (active): 409",
      "D1 down: multipart_uploads",
      "D1 down: user_quotas",
    ]);
  });

  it("completions: never stuck in completing, resolved from what R2 holds, D1 converges", {
    timeout: 300_000,
  }, async () => {
    await check("completions", completionSchedules, COMPLETION_EXAMPLES, COMPLETION_RUNS, [
      "complete (active): 409",
      "complete (completing): 200",
      "complete (completing): 409",
      "complete while R2 fails (active): 502",
      "complete while R2 fails (completing): 502",
      "time passes (completing, assembled: false)",
      "time passes (completing, assembled: true)",
      "a Worker finishes (active)",
      "D1 down",
    ]);
  });
});

let runIndex = 0;

/**
 * Runs the `examples`, then `numRuns` schedules of `schedules` (seed SEED), each against a new upload,
 * checking the invariants after every step and at the end; then checks the schedules exercised `mustSee`.
 */
async function check(
  name: string,
  schedules: fc.Arbitrary<Scenario>,
  examples: Scenario[],
  numRuns: number,
  mustSee: string[],
) {
  seen.clear();
  let lastFailure: string | null = null;
  try {
    await fc.assert(
      fc.asyncProperty(schedules, async (sc) => {
        const run = await Run.start(sc, runIndex++);
        try {
          if (sc.prefilled) {
            for (let n = 1; n <= sc.parts; n++) await run.put(n, "good");
            run.log.push("(every part sent)");
          }
          await run.checkStep();
          for (const a of scheduleOf(sc)) {
            run.log.push(describeAction(a));
            await run.apply(a);
            await run.checkStep();
          }
          await run.finish();
          await run.converge();
        } catch (err) {
          lastFailure = run.log.join(" → ");
          throw err;
        } finally {
          await run.d1Up();
        }
      }),
      // The examples come first and count towards numRuns.
      {
        seed: SEED,
        numRuns: examples.length + numRuns,
        examples: examples.map((e) => [e] as [Scenario]),
        endOnFailure: false,
      },
    );
  } catch (err) {
    // fast-check's message has the seed, the path and the shrunk schedule; this is the last one that failed.
    console.error(`fault suite "${name}" failed with seed ${SEED}; last failing schedule: ${lastFailure}`);
    throw err;
  }
  // The schedules must have hit the faults this suite stands for (a generator change could lose them).
  const summary = JSON.stringify(Object.fromEntries([...seen].sort()), null, 1);
  console.log(`fault suite "${name}", seed ${SEED}, ${examples.length}+${numRuns} schedules exercised: ${summary}`);
  for (const must of mustSee) {
    const hits = [...seen].filter(([what]) => what.startsWith(must)).reduce((sum, [, n]) => sum + n, 0);
    expect(hits, `not exercised: ${must}\n${summary}`).toBeGreaterThan(0);
  }
}

function describeAction(a: Action): string {
  switch (a.t) {
    case "put":
      return `put(${a.n}, ${a.kind})`;
    case "putTwice":
      return `putTwice(${a.n}, ${a.kinds.join("+")})`;
    case "workerDiesAfterUpload":
    case "r2Overwrites":
      return `${a.t}(${a.n})`;
    case "d1Down":
      return `d1Down(${a.table})`;
    default:
      return a.t;
  }
}

/**
 * The app over an R2 whose multipart completion fails as a transient storage error does (everything else
 * is the real bucket), with the other bindings as they are.
 */
async function callWithFaultyR2(path: string, init: TestInit): Promise<Reply> {
  const bucket = env.BUCKET;
  const failing = new Proxy(bucket, {
    get(target, prop) {
      if (prop === "resumeMultipartUpload") {
        return (key: string, id: string) => {
          const upload = target.resumeMultipartUpload(key, id);
          return new Proxy(upload, {
            get(u, p) {
              if (p === "complete") return async () => Promise.reject(new Error("internal error (10001)"));
              const value = Reflect.get(u, p);
              return typeof value === "function" ? value.bind(u) : value;
            },
          });
        };
      }
      const value = Reflect.get(target, prop);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const headers = new Headers(init.headers);
  if (init.token) headers.set("Authorization", `Bearer ${init.token}`);
  const res = await createApp().request(
    `https://uploads.test${path}`,
    { ...init, headers },
    { ...env, BUCKET: failing },
  );
  const text = await res.text();
  return { status: res.status, headers: res.headers, body: text ? JSON.parse(text) : null };
}

/** A body that sends `head`, then fails as a dropped connection does. */
function cutShort(head: Uint8Array): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (sent) controller.error(new Error("connection dropped"));
      else {
        sent = true;
        controller.enqueue(head.slice());
      }
    },
  });
}

const b64 = (bytes: Uint8Array) => {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(s);
};
const hex = (bytes: Uint8Array) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
