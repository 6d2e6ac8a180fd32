import { describe, expect, it } from "vitest";
import { RESERVATION_CHECK_MS, reservationVerdict } from "../../objects/user-account/ledger";
import type { FileRecord } from "../../src/core/domain";

const file: FileRecord = {
  id: "f1",
  userId: "alice",
  uploadId: "u1",
  filename: "a.bin",
  size: 3,
  contentType: "application/octet-stream",
  sha256: null,
  etag: "etag",
  r2Key: "u/alice/f1",
  metadata: null,
  createdAt: 5,
};

describe("reservationVerdict", () => {
  it("releases the reservation of a session that never opened", () => {
    expect(reservationVerdict("alice", "u1", { exists: false }, 0)).toEqual({
      kind: "settle",
      message: { userId: "alice", uploadId: "u1", kind: "release", reason: "orphaned" },
    });
  });

  it("releases the reservation of a session that ended without a file, naming how it ended", () => {
    for (const status of ["aborted", "expired", "failed"] as const) {
      expect(reservationVerdict("alice", "u1", { exists: true, status, expiresAt: 10, file: null }, 0)).toEqual({
        kind: "settle",
        message: { userId: "alice", uploadId: "u1", kind: "release", reason: status },
      });
    }
  });

  it("commits the reservation of a completed session into its file", () => {
    const view = { exists: true, status: "completed", expiresAt: 10, file } as const;
    expect(reservationVerdict("alice", "u1", view, 0)).toEqual({
      kind: "settle",
      message: { userId: "alice", uploadId: "u1", kind: "commit", file },
    });
  });

  it("asks a live session again once its expiry has passed", () => {
    const active = { exists: true, status: "active", expiresAt: 1_000, file: null } as const;
    expect(reservationVerdict("alice", "u1", active, 500)).toEqual({
      kind: "checkAgain",
      at: 1_000 + RESERVATION_CHECK_MS,
    });
    expect(reservationVerdict("alice", "u1", { ...active, status: "completing" }, 2_000)).toEqual({
      kind: "checkAgain",
      at: 2_000 + RESERVATION_CHECK_MS,
    });
  });
});
