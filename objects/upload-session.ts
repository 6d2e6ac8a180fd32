import { DurableObject } from "cloudflare:workers";

/**
 * One per upload: owns the multipart session state and its expiry alarm.
 */
export class UploadSession extends DurableObject<Env> {
  /** Readiness probe: proves the namespace routes to a live object with working storage. */
  async ping(): Promise<"pong"> {
    this.ctx.storage.sql.exec("SELECT 1");
    return "pong";
  }
}
