import { describe, expect, it } from "vitest";
import { MAX_TAIL_SEGMENTS, type TailRef, type TusFinish, type TusPart } from "../../objects/upload-session/contract";
import {
  admitTusWrite,
  checkTusPart,
  newTailKey,
  planTusFinish,
  type RecordedBytes,
  type WriteLayout,
} from "../../objects/upload-session/tus-write-plan";

// Parts of 10 bytes; a known upload of 25 bytes is parts of 10, 10 and 5.
const known: WriteLayout = { lengthDeferred: false, size: 25, maxLength: null, partSize: 10, partCount: 3 };
// A deferred length: size and part count 0 until declared, at most 100 bytes.
const deferred: WriteLayout = { lengthDeferred: true, size: 0, maxLength: 100, partSize: 10, partCount: 0 };

const nothing: RecordedBytes = { partCount: 0, partBytes: 0, tail: [] };
const part = (partNumber: number, size: number, consumedTail: string[] = []): TusPart => ({
  partNumber,
  size,
  etag: `etag-${partNumber}`,
  consumedTail,
});
const seg = (key: string, size: number): TailRef => ({ key, size });
const finish = (f: Partial<TusFinish>): TusFinish => ({ parts: [], newTail: null, uploadLength: null, ...f });
const write = (contentLength: number, uploadLength: number | null = null, checksum = false) => ({
  contentLength,
  uploadLength,
  checksum,
});

describe("admitTusWrite", () => {
  it("admits a body that fits a known length, with no reservation to grow and no length to record", () => {
    expect(admitTusWrite(known, 10, write(15))).toEqual({
      ok: true,
      value: { length: 25, reserveBytes: null, lengthToRecord: null },
    });
    expect(admitTusWrite(known, 0, write(25, 25)).ok).toBe(true);
  });

  it("refuses a length that changes once set (tus: MUST NOT be changed)", () => {
    const refused = admitTusWrite(known, 0, write(5, 30));
    expect(refused).toMatchObject({
      ok: false,
      error: { status: 400, code: "upload_length_mismatch", details: { uploadLength: 25, declared: 30 } },
    });
  });

  it("refuses a declared length below the bytes already received", () => {
    expect(admitTusWrite(deferred, 20, write(0, 15))).toMatchObject({
      ok: false,
      error: { status: 400, code: "upload_length_too_small", details: { offset: 20, declared: 15 } },
    });
  });

  it("refuses a declared length past the largest allowed file", () => {
    expect(admitTusWrite(deferred, 0, write(0, 101))).toMatchObject({
      ok: false,
      error: { status: 413, code: "file_too_large", details: { size: 101, maxFileSizeBytes: 100 } },
    });
  });

  it("refuses a body that runs past the length", () => {
    expect(admitTusWrite(known, 20, write(6))).toMatchObject({
      ok: false,
      error: {
        status: 413,
        code: "exceeds_upload_length",
        details: { offset: 20, contentLength: 6, uploadLength: 25 },
      },
    });
    expect(admitTusWrite(deferred, 0, write(11, 10)).ok).toBe(false);
  });

  it("refuses a body of an undeclared length that runs past the largest allowed file", () => {
    expect(admitTusWrite(deferred, 90, write(11))).toMatchObject({
      ok: false,
      error: { code: "file_too_large", details: { size: 101, maxFileSizeBytes: 100 } },
    });
  });

  it("grows a deferred upload's reservation to the declared length, or to what the body may bring", () => {
    expect(admitTusWrite(deferred, 20, write(5, 60))).toEqual({
      ok: true,
      value: { length: 60, reserveBytes: 60, lengthToRecord: 60 },
    });
    expect(admitTusWrite(deferred, 20, write(5))).toEqual({
      ok: true,
      value: { length: null, reserveBytes: 25, lengthToRecord: null },
    });
  });

  it("waits to record a declared length until the checksum of its body matched", () => {
    expect(admitTusWrite(deferred, 0, write(5, 60, true))).toEqual({
      ok: true,
      value: { length: 60, reserveBytes: 60, lengthToRecord: null },
    });
  });
});

describe("checkTusPart", () => {
  const recorded = { partCount: 0, tailKeys: ["t1", "t2"] };

  it("accepts the next whole part that opens with exactly the recorded tail", () => {
    expect(checkTusPart(known, recorded, part(1, 10, ["t1", "t2"]))).toBeNull();
    expect(checkTusPart(known, { partCount: 1, tailKeys: [] }, part(2, 10))).toBeNull();
  });

  it("refuses a part out of order, of the wrong size, or not opening with the recorded tail", () => {
    for (const p of [part(2, 10, ["t1", "t2"]), part(1, 9, ["t1", "t2"]), part(1, 10, ["t1"]), part(1, 10, [])]) {
      expect(checkTusPart(known, recorded, p)).toMatchObject({
        ok: false,
        error: { status: 409, code: "write_rejected", details: { expectedPart: 1, partNumber: p.partNumber } },
      });
    }
  });

  it("refuses the upload's last part, which is recorded with the end of the write", () => {
    expect(checkTusPart(known, { partCount: 2, tailKeys: [] }, part(3, 10))).not.toBeNull();
  });

  it("has no last part while the length is deferred", () => {
    expect(checkTusPart(deferred, { partCount: 7, tailKeys: [] }, part(8, 10))).toBeNull();
  });
});

describe("planTusFinish", () => {
  it("appends a new tail segment after the recorded ones when no part filled", () => {
    const recorded: RecordedBytes = { partCount: 1, partBytes: 10, tail: [seg("t1", 3)] };
    const planned = planTusFinish(known, recorded, finish({ newTail: { key: "t2", size: 4, copied: [] } }));
    expect(planned).toEqual({
      ok: true,
      value: { length: 25, lengthToRecord: null, dropped: [], offset: 17, completing: false },
    });
  });

  it("drops the tail a part consumed and keeps the write's new segment", () => {
    const recorded: RecordedBytes = { partCount: 0, partBytes: 0, tail: [seg("t1", 3), seg("t2", 4)] };
    const fin = finish({ parts: [part(1, 10, ["t1", "t2"])], newTail: { key: "t3", size: 6, copied: [] } });
    expect(planTusFinish(known, recorded, fin)).toEqual({
      ok: true,
      value: { length: 25, lengthToRecord: null, dropped: ["t1", "t2"], offset: 16, completing: false },
    });
  });

  it("folds the recorded segments into a new one that copied them", () => {
    const recorded: RecordedBytes = { partCount: 0, partBytes: 0, tail: [seg("t1", 3), seg("t2", 4)] };
    const folded = planTusFinish(known, recorded, finish({ newTail: { key: "t3", size: 9, copied: ["t1", "t2"] } }));
    expect(folded).toMatchObject({ ok: true, value: { dropped: ["t1", "t2"], offset: 9 } });
    const wrong = planTusFinish(known, recorded, finish({ newTail: { key: "t3", size: 9, copied: ["t2"] } }));
    expect(wrong).toMatchObject({
      ok: false,
      error: { code: "write_rejected", message: "The new tail does not build on the recorded one" },
    });
  });

  it("refuses to append past the most tail segments a write may leave", () => {
    const tail = Array.from({ length: MAX_TAIL_SEGMENTS }, (_, i) => seg(`t${i}`, 1));
    const recorded: RecordedBytes = { partCount: 0, partBytes: 0, tail };
    const fin = finish({ newTail: { key: "more", size: 1, copied: [] } });
    expect(planTusFinish(known, recorded, fin)).toMatchObject({
      ok: false,
      error: { message: "Too many tail segments" },
    });
  });

  it("records a whole upload sent in one write, and completes it", () => {
    const fin = finish({ parts: [part(1, 10), part(2, 10), part(3, 5)] });
    expect(planTusFinish(known, nothing, fin)).toEqual({
      ok: true,
      value: { length: 25, lengthToRecord: null, dropped: [], offset: 25, completing: true },
    });
  });

  it("completes when the last part, of the remainder, brings the offset to the length", () => {
    const recorded: RecordedBytes = { partCount: 2, partBytes: 20, tail: [] };
    expect(planTusFinish(known, recorded, finish({ parts: [part(3, 5)] }))).toEqual({
      ok: true,
      value: { length: 25, lengthToRecord: null, dropped: [], offset: 25, completing: true },
    });
  });

  it("refuses parts that do not follow: a gap, a wrong size, a full-size last part, past the plan", () => {
    const recorded: RecordedBytes = { partCount: 1, partBytes: 10, tail: [] };
    for (const parts of [
      [part(3, 10)],
      [part(2, 9)],
      [part(2, 10), part(3, 10)],
      [part(2, 10), part(3, 5), part(4, 1)],
    ]) {
      expect(planTusFinish(known, recorded, finish({ parts }))).toMatchObject({
        ok: false,
        error: { status: 409, code: "write_rejected", message: "The parts do not follow the recorded bytes" },
      });
    }
  });

  it("records a deferred length declared at the end, cutting the last part from it", () => {
    const recorded: RecordedBytes = { partCount: 1, partBytes: 10, tail: [] };
    const fin = finish({ parts: [part(2, 10), part(3, 2)], uploadLength: 22 });
    expect(planTusFinish(deferred, recorded, fin)).toEqual({
      ok: true,
      value: { length: 22, lengthToRecord: 22, dropped: [], offset: 22, completing: true },
    });
  });

  it("refuses a changed length, a write past the length, and a length below what was received", () => {
    const recorded: RecordedBytes = { partCount: 1, partBytes: 10, tail: [seg("t1", 5)] };
    expect(planTusFinish(known, recorded, finish({ uploadLength: 30 }))).toMatchObject({
      error: { message: "Upload-Length cannot change once set" },
    });
    expect(planTusFinish(known, recorded, finish({ newTail: { key: "t2", size: 11, copied: [] } }))).toMatchObject({
      error: { message: "The write runs past Upload-Length" },
    });
    expect(planTusFinish(deferred, recorded, finish({ uploadLength: 12 }))).toMatchObject({
      error: { message: "The write runs past Upload-Length" },
    });
    // A fold whose new segment is smaller than what it replaces lands below the bytes received.
    const fold = finish({ newTail: { key: "t2", size: 1, copied: ["t1"] }, uploadLength: 12 });
    expect(planTusFinish(deferred, recorded, fold)).toMatchObject({
      error: { message: "Upload-Length is below the bytes already received" },
    });
  });

  it("does not complete while a tail segment is left, even at the length", () => {
    const recorded: RecordedBytes = { partCount: 2, partBytes: 20, tail: [] };
    const fin = finish({ newTail: { key: "t1", size: 5, copied: [] } });
    expect(planTusFinish(known, recorded, fin)).toMatchObject({ ok: true, value: { offset: 25, completing: false } });
  });
});

describe("newTailKey", () => {
  it("puts the write's segment under the upload's prefix, named by sequence and token", () => {
    expect(newTailKey("tmp/u1/", 7, "0123456789abcdef")).toBe("tmp/u1/tail-7-01234567");
  });
});
