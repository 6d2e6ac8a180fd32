// What a tus writer may make the session record or delete (review of issue 17): a key it names is deleted
// only when it is the upload's own unrecorded tail key (17a); a part number reported twice is an Outcome,
// never a SQLite constraint error, and a number written over in R2 is forgotten (17b); a writer that lost
// its lease reports parts R2 may now hold, so the record from them on is forgotten.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { accountFor, sessionFor } from "../../objects/stubs";
import type { SessionInit } from "../../src/core/domain";
import { MiB, sleep } from "../support/http";
import { drain, testMeta, testPolicy, tusWriteRequest } from "../support/objects";

const PART = 5 * MiB;
const SIZE = 3 * PART;
const refused = (status: number, code: string) => ({ ok: false, error: { status, code } });

/** Opens a three-part tus upload straight through the objects and takes a write lease for all of it. */
async function openTus() {
  const userId = `tus-rec-${crypto.randomUUID()}`;
  const uploadId = crypto.randomUUID();
  const fileId = crypto.randomUUID();
  const reserved = await accountFor(env, userId).reserve({
    userId,
    uploadId,
    fileId,
    filename: "t.bin",
    bytes: SIZE,
    policy: testPolicy({}),
  });
  expect(reserved.ok).toBe(true);
  const init: SessionInit = {
    uploadId,
    userId,
    fileId,
    protocol: "tus",
    filename: "t.bin",
    contentType: "application/octet-stream",
    size: SIZE,
    partSize: PART,
    partCount: 3,
    sha256: null,
    metadata: null,
    r2Key: `u/${userId}/${fileId}`,
    ttlSeconds: 3600,
    tus: { lengthDeferred: false, metadataHeader: null, maxLength: SIZE },
  };
  const session = sessionFor(env, uploadId);
  expect((await session.open(init, testMeta)).ok).toBe(true);
  const lease = async () => {
    const grant = await session.tusBeginWrite(userId, tusWriteRequest(SIZE, 60_000));
    if (!grant.ok || grant.value.kind !== "write") throw new Error(`no lease: ${JSON.stringify(grant)}`);
    return grant.value;
  };
  const offset = async () => {
    const status = await session.tusStatus(userId);
    if (!status.ok) throw new Error(`no status: ${JSON.stringify(status)}`);
    return status.value.offset;
  };
  return { userId, uploadId, session, lease, offset };
}

const part = (partNumber: number, etag: string, consumedTail: string[] = []) => ({
  partNumber,
  size: PART,
  etag,
  consumedTail,
});

describe("keys a writer names (review 17a)", () => {
  it("a release deletes only an unrecorded key under the upload's own tail prefix", async () => {
    const t = await openTus();
    const grant = await t.lease();
    const foreign = [`u/${t.userId}/someone-elses-file`, `tmp/${crypto.randomUUID()}/tail-1-abcdefgh`, "tmp/"];
    for (const key of foreign) await env.BUCKET.put(key, "keep me");
    for (const key of foreign) {
      expect(await t.session.tusReleaseLease(t.userId, grant.token, key), key).toMatchObject(
        refused(409, "write_rejected"),
      );
    }
    // A refusal changes nothing: the lease is still held.
    expect(await t.session.tusRenewLease(t.userId, grant.token, 60_000)).toMatchObject({ ok: true });

    // Its own unrecorded key goes.
    await env.BUCKET.put(grant.newTailKey, "unrecorded");
    expect(await t.session.tusReleaseLease(t.userId, grant.token, grant.newTailKey)).toEqual({
      ok: true,
      value: { released: true },
    });
    await drain(t.session);
    expect(await env.BUCKET.head(grant.newTailKey)).toBeNull();
    for (const key of foreign) expect(await env.BUCKET.head(key), key).not.toBeNull();
  });

  it("a refused write never deletes a key that is not its own, and a foreign new tail is never recorded", async () => {
    const t = await openTus();
    const grant = await t.lease();
    const foreign = `u/${t.userId}/another-file`;
    await env.BUCKET.put(foreign, "keep me");
    const fin = (key: string) => ({ parts: [], newTail: { key, size: 10, copied: [] }, uploadLength: null });
    // Refused for the key itself: nothing recorded, nothing deleted.
    expect(await t.session.tusFinishWrite(t.userId, grant.token, fin(foreign), 60_000, testMeta)).toMatchObject(
      refused(409, "write_rejected"),
    );
    // Refused for another reason (a stale token): the foreign key is not queued for deletion either.
    expect(await t.session.tusFinishWrite(t.userId, "not-the-token", fin(foreign), 60_000, testMeta)).toMatchObject(
      refused(409, "lease_lost"),
    );
    await drain(t.session);
    expect(await env.BUCKET.head(foreign)).not.toBeNull();
    expect(await t.offset()).toBe(0);
  });
});

describe("part numbers reported twice (review 17b)", () => {
  it("the same part again is idempotent; another ETag for its number forgets it; never a throw", async () => {
    const t = await openTus();
    const grant = await t.lease();
    const first = part(1, "etag-1");
    expect(await t.session.tusRecordPart(t.userId, grant.token, first, 60_000, testMeta)).toEqual({
      ok: true,
      value: { offset: PART },
    });
    // A retried report of the same part changes nothing.
    expect(await t.session.tusRecordPart(t.userId, grant.token, first, 60_000, testMeta)).toEqual({
      ok: true,
      value: { offset: PART },
    });
    expect(await t.offset()).toBe(PART);
    // Part 1 written again with other bytes: R2 no longer holds what the record says.
    const again = await t.session.tusRecordPart(t.userId, grant.token, part(1, "etag-other"), 60_000, testMeta);
    expect(again).toMatchObject({ ok: false, error: { status: 409, code: "write_rejected", details: { offset: 0 } } });
    expect(await t.offset()).toBe(0);
  });

  it("the end of a write naming a recorded part is refused as an Outcome and records nothing", async () => {
    const t = await openTus();
    const grant = await t.lease();
    expect((await t.session.tusRecordPart(t.userId, grant.token, part(1, "etag-1"), 60_000, testMeta)).ok).toBe(true);
    const fin = { parts: [part(1, "etag-1"), part(2, "etag-2")], newTail: null, uploadLength: null };
    expect(await t.session.tusFinishWrite(t.userId, grant.token, fin, 60_000, testMeta)).toMatchObject(
      refused(409, "write_rejected"),
    );
    expect(await t.offset()).toBe(PART);
  });
});

describe("a writer that lost its lease", () => {
  it("reports a part R2 may now hold: the record from it on is forgotten, the new holder revoked", async () => {
    const t = await openTus();
    const a = await t.lease();
    // A stalls; its lease lapses and B takes over, records part 1 and keeps going.
    expect((await t.session.tusRenewLease(t.userId, a.token, 1)).ok).toBe(true);
    await sleep(5);
    const b = await t.lease();
    expect((await t.session.tusRecordPart(t.userId, b.token, part(1, "etag-b1"), 60_000, testMeta)).ok).toBe(true);
    expect(await t.offset()).toBe(PART);
    // A's upload of part 1 finished in R2 after B's: R2 holds A's bytes. A's report is refused, and tells.
    expect(await t.session.tusRecordPart(t.userId, a.token, part(1, "etag-a1"), 60_000, testMeta)).toMatchObject(
      refused(409, "lease_lost"),
    );
    expect(await t.offset()).toBe(0);
    // B's lease is revoked: whatever it reports next is refused, and the client resumes from HEAD's offset.
    expect(await t.session.tusRecordPart(t.userId, b.token, part(2, "etag-b2", []), 60_000, testMeta)).toMatchObject(
      refused(409, "lease_lost"),
    );
    const c = await t.lease();
    expect(c.nextPart).toBe(1);
  });
});
