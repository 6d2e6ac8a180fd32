// The upload session's state machine, observed through its RPC methods: every legal move
// (active → completing → completed | failed | active; active → aborted | expired), the moves it refuses,
// and that nothing leaves a terminal state. Each move that ends an upload settles the ledger: a completed
// upload's reservation becomes used bytes, any other end gives it back.
//
// active → completed | failed are taken only by a Worker whose assembly succeeded after its completion
// was handed back (completing → active); the alarm test (upload-session-alarms.test.ts) observes them.
import { env, runDurableObjectAlarm } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { accountFor, sessionFor } from "../../objects/stubs";
import type { Protocol, SessionInit } from "../../src/core/domain";
import { callJson, MiB, randomBytes, sleep, tokenFor, uploadWhole } from "../support/http";
import { drain, testMeta, testPolicy, tusWriteRequest } from "../support/objects";

const SIZE = 10;
const policy = testPolicy({});
const refused = (status: number, code: string) => ({ ok: false, error: { status, code } });

/**
 * Opens a one-part upload as the Worker does, straight through the objects: the account reserves the
 * bytes, then the session opens (with a real R2 multipart upload). Each call is a new user and upload.
 */
async function openSession(opts: { ttlSeconds?: number; protocol?: Protocol; sha256?: string } = {}) {
  const userId = `sm-${crypto.randomUUID()}`;
  const uploadId = crypto.randomUUID();
  const fileId = crypto.randomUUID();
  const account = accountFor(env, userId);
  const reserved = await account.reserve({ userId, uploadId, fileId, filename: "f.bin", bytes: SIZE, policy });
  expect(reserved.ok).toBe(true);
  const init: SessionInit = {
    uploadId,
    userId,
    fileId,
    protocol: opts.protocol ?? "native",
    filename: "f.bin",
    contentType: "application/octet-stream",
    size: SIZE,
    partSize: 5 * MiB,
    partCount: 1,
    sha256: opts.sha256 ?? null,
    metadata: null,
    r2Key: `u/${userId}/${fileId}`,
    ttlSeconds: opts.ttlSeconds ?? 3600,
    tus: opts.protocol === "tus" ? { lengthDeferred: false, metadataHeader: null, maxLength: SIZE } : undefined,
  };
  const session = sessionFor(env, uploadId);
  expect(await session.open(init, testMeta)).toMatchObject({ ok: true, value: { status: "active" } });
  return {
    userId,
    uploadId,
    fileId,
    session,
    /** The status as stored, read without the lazy expiry that `view` applies. */
    status: async () => {
      const seen = await session.ledgerView();
      return seen.exists ? seen.status : null;
    },
    usage: () => account.usage(userId, policy),
  };
}

type Opened = Awaited<ReturnType<typeof openSession>>;

/** Records the one part (the Worker has put it in R2) and begins completion: the session is completing. */
async function toCompleting(s: Opened): Promise<void> {
  const part = { partNumber: 1, size: SIZE, etag: "etag-1" };
  expect(await s.session.recordPart(s.userId, part, testMeta)).toMatchObject({ ok: true, value: part });
  expect(await s.session.beginCompletion(s.userId)).toMatchObject({
    ok: true,
    value: { kind: "assemble", parts: [{ partNumber: 1, etag: "etag-1" }] },
  });
}

describe("the session state machine", () => {
  it("refuses illegal transitions with 409 and keeps every transition idempotent", async () => {
    const token = await tokenFor("machine");
    const { uploadId } = await uploadWhole(token, randomBytes(10));
    const s = sessionFor(env, uploadId);
    const part = await s.recordPart("machine", { partNumber: 1, size: 10, etag: "x" }, testMeta);
    expect(part).toMatchObject({ ok: false, error: { status: 409, code: "upload_not_active" } });
    const abort = await s.abort("machine", testMeta);
    expect(abort).toMatchObject({ ok: false, error: { status: 409 } });
    const finish = await s.finishCompletion("machine", { etag: "e", checksum: "not_declared" }, testMeta);
    expect(finish.ok).toBe(true); // completed already: the same file again
    const view = await s.view("machine");
    expect(view).toMatchObject({ ok: true, value: { status: "completed" } });
    expect((await callJson("/v1/usage", { token })).body).toMatchObject({ usedBytes: 10, fileCount: 1 });
  });
});

describe("legal transitions", () => {
  it("active → completing → completed: the reservation becomes used bytes", async () => {
    const s = await openSession();
    expect(await s.usage()).toMatchObject({ usedBytes: 0, reservedBytes: SIZE, activeUploads: 1 });
    await toCompleting(s);
    expect(await s.status()).toBe("completing");
    // Assembling holds the reservation: nothing is settled until the file exists.
    expect(await s.usage()).toMatchObject({ usedBytes: 0, reservedBytes: SIZE, activeUploads: 1 });

    const done = await s.session.finishCompletion(s.userId, { etag: "assembled", checksum: "verified" }, testMeta);
    expect(done).toMatchObject({ ok: true, value: { id: s.fileId, size: SIZE, etag: "assembled" } });
    expect(await s.status()).toBe("completed");
    expect(await s.session.view(s.userId)).toMatchObject({ ok: true, value: { file: { id: s.fileId } } });
    expect(await s.usage()).toMatchObject({ usedBytes: SIZE, reservedBytes: 0, fileCount: 1, activeUploads: 0 });
  });

  it("completing → failed when the assembled bytes do not match the declared SHA-256", async () => {
    const s = await openSession({ sha256: "ab".repeat(32) });
    await toCompleting(s);
    const finish = await s.session.finishCompletion(s.userId, { etag: "e", checksum: { mismatch: "cd" } }, testMeta);
    expect(finish).toMatchObject(refused(422, "checksum_mismatch"));
    expect(await s.status()).toBe("failed");
    expect(await s.usage()).toMatchObject({ usedBytes: 0, reservedBytes: 0, fileCount: 0, activeUploads: 0 });
  });

  it("completing → failed when a tus upload is terminated with no live writer finishing it", async () => {
    const s = await openSession({ protocol: "tus" });
    const grant = await s.session.tusBeginWrite(s.userId, tusWriteRequest(SIZE, 60_000));
    if (!grant.ok || grant.value.kind !== "write") throw new Error(`no write lease: ${JSON.stringify(grant)}`);
    const { token } = grant.value;
    // The last byte moves a tus upload to completing by itself; its writer keeps the lease to finish it.
    const fin = {
      parts: [{ partNumber: 1, size: SIZE, etag: "e", consumedTail: [] }],
      newTail: null,
      uploadLength: null,
    };
    const finished = await s.session.tusFinishWrite(s.userId, token, fin, 60_000, testMeta);
    expect(finished).toMatchObject({ ok: true, value: { offset: SIZE, completing: true } });
    expect(await s.status()).toBe("completing");
    // While that writer lives, a termination waits (423) and changes nothing.
    expect(await s.session.tusTerminate(s.userId, testMeta)).toMatchObject(refused(423, "upload_locked"));
    expect(await s.status()).toBe("completing");
    // The writer dies: shorten its lease to a millisecond rather than wait a minute.
    expect((await s.session.tusRenewLease(s.userId, token, 1)).ok).toBe(true);
    await sleep(5);
    expect(await s.session.tusTerminate(s.userId, testMeta)).toMatchObject({ ok: true, value: { kind: "terminated" } });
    expect(await s.status()).toBe("failed");
    expect(await s.usage()).toMatchObject({ usedBytes: 0, reservedBytes: 0, activeUploads: 0 });
    expect(await s.session.tusStatus(s.userId)).toMatchObject(refused(410, "upload_terminated"));
  });

  it("completing → active when the Worker gives the completion up; a later complete begins again", async () => {
    const s = await openSession();
    await toCompleting(s);
    const back = await s.session.abandonCompletion(s.userId, 1);
    expect(back).toEqual({ ok: true, value: { status: "active", file: null, missingParts: [] } });
    expect(await s.status()).toBe("active");
    // The reservation is still held, the part still recorded; abort (or a part, or complete) works again.
    expect(await s.usage()).toMatchObject({ usedBytes: 0, reservedBytes: SIZE, activeUploads: 1 });
    expect(await s.session.beginCompletion(s.userId)).toMatchObject({
      ok: true,
      value: { kind: "assemble", parts: [{ partNumber: 1, etag: "etag-1" }], attempt: 2 },
    });
    // A give-up from the first completion's Worker does not hand back the second one.
    expect(await s.session.abandonCompletion(s.userId, 1)).toMatchObject({ ok: true, value: { status: "completing" } });
    expect(await s.status()).toBe("completing");
    expect(await s.session.abandonCompletion(s.userId, 2)).toMatchObject({ ok: true, value: { status: "active" } });
    expect(await s.session.abort(s.userId, testMeta)).toEqual({ ok: true, value: { status: "aborted" } });
    expect(await s.usage()).toMatchObject({ usedBytes: 0, reservedBytes: 0, activeUploads: 0 });
  });

  it("active → aborted: the R2 multipart upload is aborted and the reservation given back", async () => {
    const s = await openSession();
    const ticket = await s.session.authorizePart(s.userId, 1, SIZE);
    if (!ticket.ok) throw new Error(`no ticket: ${JSON.stringify(ticket)}`);
    expect(await s.session.abort(s.userId, testMeta)).toEqual({ ok: true, value: { status: "aborted" } });
    expect(await s.status()).toBe("aborted");
    expect(await s.usage()).toMatchObject({ usedBytes: 0, reservedBytes: 0, activeUploads: 0 });
    const { r2Key, r2UploadId } = ticket.value;
    await expect(env.BUCKET.resumeMultipartUpload(r2Key, r2UploadId).uploadPart(1, "x")).rejects.toThrow();
  });

  it("active → expired once its time passes, whether a request or the alarm comes first", async () => {
    const asked = await openSession({ ttlSeconds: 1 });
    const alarmed = await openSession({ ttlSeconds: 1 });
    await sleep(1100);
    // A request finds it past its time (even if the alarm has not run yet) and expires it on the spot.
    expect(await asked.session.view(asked.userId)).toMatchObject({ ok: true, value: { status: "expired" } });
    // The alarm expires the other; the runtime may already have fired it on its own, which is the same.
    await runDurableObjectAlarm(alarmed.session);
    expect(await alarmed.status()).toBe("expired");
    for (const s of [asked, alarmed]) {
      await drain(s.session);
      expect(await s.usage()).toMatchObject({ usedBytes: 0, reservedBytes: 0, activeUploads: 0 });
    }
  });
});

describe("refused transitions", () => {
  it("active → completing needs every part; a tus upload gets there only with its last byte", async () => {
    const native = await openSession();
    expect(await native.session.beginCompletion(native.userId)).toMatchObject({
      ok: false,
      error: { status: 409, code: "parts_missing", details: { missingParts: [1] } },
    });
    expect(await native.status()).toBe("active");
    const tus = await openSession({ protocol: "tus" });
    expect(await tus.session.beginCompletion(tus.userId)).toMatchObject(refused(409, "upload_incomplete"));
    expect(await tus.status()).toBe("active");
  });

  it("active never jumps to completed: finishing needs a begun completion", async () => {
    const s = await openSession();
    const finish = await s.session.finishCompletion(s.userId, { etag: "e", checksum: "not_declared" }, testMeta);
    expect(finish).toMatchObject(refused(409, "upload_not_active"));
    expect(await s.status()).toBe("active");
    expect(await s.usage()).toMatchObject({ usedBytes: 0, reservedBytes: SIZE });
  });

  it("completing takes no part, cannot be aborted, and begins again idempotently", async () => {
    const s = await openSession();
    await toCompleting(s);
    expect(await s.session.authorizePart(s.userId, 1, SIZE)).toMatchObject(refused(409, "upload_not_active"));
    const part = { partNumber: 1, size: SIZE, etag: "late" };
    expect(await s.session.recordPart(s.userId, part, testMeta)).toMatchObject(refused(409, "upload_not_active"));
    expect(await s.session.abort(s.userId, testMeta)).toMatchObject(refused(409, "upload_not_active"));
    // A retried complete gets the same step, with the part as first recorded.
    expect(await s.session.beginCompletion(s.userId)).toMatchObject({
      ok: true,
      value: { kind: "assemble", parts: [{ partNumber: 1, etag: "etag-1" }] },
    });
    expect(await s.status()).toBe("completing");
    expect(await s.usage()).toMatchObject({ usedBytes: 0, reservedBytes: SIZE, activeUploads: 1 });
  });
});

describe("nothing leaves a terminal state", () => {
  /** How each terminal state is reached, and what each method that could move a session answers there. */
  const TERMINAL = [
    {
      state: "completed",
      reach: async (s: Opened) => {
        await toCompleting(s);
        await s.session.finishCompletion(s.userId, { etag: "e", checksum: "not_declared" }, testMeta);
      },
      part: refused(409, "upload_not_active"),
      begin: { ok: true, value: { kind: "done" } },
      // A completed upload answers its file again, even to a report of a mismatch: it never turns failed.
      finish: { ok: true, value: { etag: "e" } },
      abort: refused(409, "upload_not_active"),
      usage: { usedBytes: SIZE, reservedBytes: 0, fileCount: 1, activeUploads: 0 },
    },
    {
      state: "aborted",
      reach: async (s: Opened) => {
        await s.session.abort(s.userId, testMeta);
      },
      part: refused(409, "upload_not_active"),
      begin: refused(409, "upload_not_active"),
      finish: refused(409, "upload_not_active"),
      abort: { ok: true, value: { status: "aborted" } },
      usage: { usedBytes: 0, reservedBytes: 0, fileCount: 0, activeUploads: 0 },
    },
    {
      state: "expired",
      ttlSeconds: 1,
      reach: async (s: Opened) => {
        await sleep(1100);
        await s.session.view(s.userId);
      },
      part: refused(410, "upload_expired"),
      begin: refused(410, "upload_expired"),
      finish: refused(410, "upload_expired"),
      abort: refused(410, "upload_expired"),
      usage: { usedBytes: 0, reservedBytes: 0, fileCount: 0, activeUploads: 0 },
    },
    {
      state: "failed",
      sha256: "ab".repeat(32),
      reach: async (s: Opened) => {
        await toCompleting(s);
        await s.session.finishCompletion(s.userId, { etag: "e", checksum: { mismatch: "cd" } }, testMeta);
      },
      part: refused(409, "upload_not_active"),
      begin: refused(409, "upload_not_active"),
      finish: refused(409, "upload_not_active"),
      abort: refused(409, "upload_not_active"),
      usage: { usedBytes: 0, reservedBytes: 0, fileCount: 0, activeUploads: 0 },
    },
  ];

  for (const t of TERMINAL) {
    it(`${t.state}: every method answers without moving it, the alarm too, and the ledger stays settled`, async () => {
      const s = await openSession({ ttlSeconds: t.ttlSeconds, sha256: t.sha256 });
      await t.reach(s);
      expect(await s.status()).toBe(t.state);
      await drain(s.session);
      expect(await s.usage()).toMatchObject(t.usage);

      const part = { partNumber: 1, size: SIZE, etag: "again" };
      expect(await s.session.authorizePart(s.userId, 1, SIZE)).toMatchObject(t.part);
      expect(await s.session.recordPart(s.userId, part, testMeta)).toMatchObject(t.part);
      expect(await s.session.beginCompletion(s.userId)).toMatchObject(t.begin);
      for (const checksum of ["verified", { mismatch: "cd" }] as const) {
        const finish = await s.session.finishCompletion(s.userId, { etag: "other", checksum }, testMeta);
        expect(finish, JSON.stringify(checksum)).toMatchObject(t.finish);
      }
      expect(await s.session.abort(s.userId, testMeta)).toMatchObject(t.abort);
      expect(await s.session.abandonCompletion(s.userId)).toMatchObject({ ok: true, value: { status: t.state } });
      expect(await s.session.forgetPart(s.userId, 1)).toMatchObject({ ok: true });
      await runDurableObjectAlarm(s.session);
      await drain(s.session);

      expect(await s.status()).toBe(t.state);
      expect(await s.session.view(s.userId)).toMatchObject({ ok: true, value: { status: t.state } });
      expect(await s.usage()).toMatchObject(t.usage);
    });
  }
});
