import { describe, expect, it } from "vitest";
import { type R2Job, runR2Jobs } from "../../objects/shared/r2-jobs";

/** A bucket that records what is asked of it; `keys` are the objects it holds, listed two per page. */
function fakeBucket(keys: string[], abortError?: Error) {
  const calls: string[] = [];
  const held = new Set(keys);
  const bucket = {
    async delete(key: string | string[]) {
      const all = Array.isArray(key) ? key : [key];
      calls.push(`delete ${all.join(",")}`);
      for (const k of all) held.delete(k);
    },
    async list(options: { prefix: string; cursor?: string; limit: number }) {
      // Like R2, the cursor names where the listing stopped, so deleting what was listed moves nothing.
      const after = options.cursor ?? "";
      const matching = [...held].filter((k) => k.startsWith(options.prefix) && k > after).sort();
      const page = matching.slice(0, 2);
      const truncated = matching.length > 2;
      return { objects: page.map((key) => ({ key })), truncated, cursor: truncated ? page[1] : undefined };
    },
    resumeMultipartUpload(key: string, uploadId: string) {
      return {
        async abort() {
          calls.push(`abort ${key} ${uploadId}`);
          if (abortError) throw abortError;
        },
      };
    },
  };
  return { bucket: bucket as unknown as R2Bucket, calls, held };
}

describe("runR2Jobs", () => {
  it("runs every kind of job, in order", async () => {
    const { bucket, calls, held } = fakeBucket(["tmp/u1/a", "tmp/u1/b", "tmp/u1/c", "tmp/u2/a", "u/f1"]);
    const jobs: R2Job[] = [
      { op: "abort", key: "u/f1", uploadId: "mpu" },
      { op: "deletePrefix", prefix: "tmp/u1/" },
      { op: "delete", key: "u/f1" },
    ];
    await runR2Jobs(bucket, jobs);
    expect(calls).toEqual(["abort u/f1 mpu", "delete tmp/u1/a,tmp/u1/b", "delete tmp/u1/c", "delete u/f1"]);
    expect([...held]).toEqual(["tmp/u2/a"]);
  });

  it("counts a multipart upload R2 no longer knows as aborted", async () => {
    const { bucket } = fakeBucket([], new Error("NoSuchUpload: the upload does not exist"));
    await expect(runR2Jobs(bucket, [{ op: "abort", key: "k", uploadId: "gone" }])).resolves.toBeUndefined();
  });

  it("throws on any other failure, so the outbox retries the batch", async () => {
    const { bucket, calls } = fakeBucket([], new Error("internal error"));
    const jobs: R2Job[] = [
      { op: "abort", key: "k", uploadId: "mpu" },
      { op: "delete", key: "after" },
    ];
    await expect(runR2Jobs(bucket, jobs)).rejects.toThrow("internal error");
    expect(calls).toEqual(["abort k mpu"]);
  });
});
