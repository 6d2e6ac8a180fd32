import { describe, expect, it } from "vitest";
import {
  liveLease,
  missingParts,
  partSizeOf,
  type SessionRow,
  sessionFromRow,
} from "../../objects/upload-session/session";
import type { FileRecord } from "../../src/core/domain";

const file: FileRecord = {
  id: "f1",
  userId: "alice",
  uploadId: "u1",
  filename: "a.bin",
  size: 25,
  contentType: "application/octet-stream",
  sha256: null,
  etag: "etag",
  r2Key: "u/alice/f1",
  metadata: { album: "x" },
  createdAt: 5,
};

function row(overrides: Partial<SessionRow> = {}): SessionRow {
  return {
    upload_id: "u1",
    user_id: "alice",
    file_id: "f1",
    r2_key: "u/alice/f1",
    r2_upload_id: "mpu",
    filename: "a.bin",
    content_type: "application/octet-stream",
    size: 25,
    part_size: 10,
    part_count: 3,
    sha256: null,
    metadata: '{"album":"x"}',
    protocol: "native",
    status: "active",
    ttl_ms: 1000,
    created_at: 1,
    updated_at: 2,
    expires_at: 1001,
    completed_at: null,
    file: null,
    failure: null,
    version: 1,
    length_deferred: 0,
    tus_metadata: null,
    write_seq: 0,
    lease_token: null,
    lease_expires_at: null,
    terminated_at: null,
    max_length: null,
    ...overrides,
  };
}

describe("sessionFromRow", () => {
  it("parses an active session's row once: metadata, protocol, no file, no lease", () => {
    const session = sessionFromRow(row());
    expect(session).toMatchObject({
      status: "active",
      protocol: "native",
      metadata: { album: "x" },
      lengthDeferred: false,
      lease: null,
      completedAt: null,
      file: null,
    });
  });

  it("gives a completed session its file and completion time", () => {
    const session = sessionFromRow(row({ status: "completed", completed_at: 9, file: JSON.stringify(file) }));
    expect(session.status).toBe("completed");
    if (session.status !== "completed") return;
    expect(session.file).toEqual(file);
    expect(session.completedAt).toBe(9);
  });

  it("reads a tus writer's lease and a deferred length", () => {
    const session = sessionFromRow(
      row({ protocol: "tus", length_deferred: 1, lease_token: "tok", lease_expires_at: 50, max_length: 100 }),
    );
    expect(session).toMatchObject({ protocol: "tus", lengthDeferred: true, maxLength: 100 });
    expect(session.lease).toEqual({ token: "tok", expiresAt: 50 });
    expect(liveLease(session, 49)).toEqual({ token: "tok", expiresAt: 50 });
    expect(liveLease(session, 50)).toBeNull();
  });

  it("refuses rows no version of the code writes", () => {
    expect(() => sessionFromRow(row({ status: "paused" }))).toThrow(/status/);
    expect(() => sessionFromRow(row({ protocol: "ftp" }))).toThrow(/protocol/);
    expect(() => sessionFromRow(row({ status: "completed", completed_at: 9 }))).toThrow(/file/);
    expect(() => sessionFromRow(row({ metadata: '{"n":1}' }))).toThrow(/metadata/);
    expect(() => sessionFromRow(row({ status: "completed", completed_at: 9, file: '{"id":"f1"}' }))).toThrow(
      /file record/,
    );
  });
});

describe("part rules", () => {
  it("cuts every part to the part size except the last, which holds the remainder", () => {
    const session = sessionFromRow(row());
    expect([1, 2, 3].map((n) => partSizeOf(session, n))).toEqual([10, 10, 5]);
  });

  it("lists the parts of the plan not yet recorded, in order", () => {
    expect(missingParts(4, [3, 1])).toEqual([2, 4]);
    expect(missingParts(0, [])).toEqual([]);
  });
});
