import { DurableObject } from "cloudflare:workers";

/**
 * One per user: serializes the user's quota ledger and request rate.
 */
export class UserAccount extends DurableObject<Env> {
  /** Readiness probe: proves the namespace routes to a live object with working storage. */
  async ping(): Promise<"pong"> {
    this.ctx.storage.sql.exec("SELECT 1");
    return "pong";
  }

  /** The user's ledger. */
  async usage(limitBytes: number) {
    return { usedBytes: 0, reservedBytes: 0, limitBytes, fileCount: 0, activeUploads: 0 };
  }
}
