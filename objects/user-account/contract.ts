/**
 * The account object's contract with the Worker and the upload sessions: what its RPC methods take and
 * give back.
 */
import type { FileRecord } from "../../src/core/domain";
import type { AccountPolicy } from "../../src/core/policy";

/** What the account decided about one request's rate: the response headers either way. */
export interface Admission {
  allowed: boolean;
  /** 429 when waiting helps, 413 when the request's bytes exceed the whole byte budget. */
  status: 200 | 413 | 429;
  headers: Record<string, string>;
  retryAfterSeconds: number | null;
}

/** Per-user overrides as an administrator sets them: a value, or null to remove it. */
export type PolicyOverrides = Partial<AccountPolicy>;

/** The user's ledger: `usedBytes + reservedBytes ≤ limitBytes` whenever a reservation is granted. */
export interface Usage {
  usedBytes: number;
  reservedBytes: number;
  limitBytes: number;
  fileCount: number;
  activeUploads: number;
}

export interface ReserveRequest {
  userId: string;
  uploadId: string;
  fileId: string;
  filename: string;
  bytes: number;
  /** Checked against the user's allowed types, when given. */
  contentType?: string;
  policy: AccountPolicy;
}

/** What an upload session tells the ledger when it ends. Idempotent per upload id. */
export type LedgerMessage =
  | { userId: string; uploadId: string; kind: "commit"; file: FileRecord }
  | { userId: string; uploadId: string; kind: "release"; reason: string };

export interface AccountView {
  userId: string;
  usage: Usage;
  limits: AccountPolicy;
  overrides: PolicyOverrides;
  activeUploads: ActiveUpload[];
}

export interface ActiveUpload {
  uploadId: string;
  fileId: string;
  filename: string;
  size: number;
  createdAt: number;
}
