import type { RequestIdVariables } from "hono/request-id";

/** Hono's environment for this Worker: the generated bindings plus what middleware puts on the context. */
export interface AppEnv {
  Bindings: Env;
  Variables: RequestIdVariables & {
    /** The authenticated user, set by `requireUser`. */
    userId: string;
    /** Stable error code of the response, for the request log line. */
    errorCode: string;
    /** What an audited route is about to do, so a refusal can be recorded (see `auditRefusals`). */
    auditSubject: import("../audit/audit-middleware").AuditSubject;
    /** A verified presigned link's claims, set by the link routes before admission. */
    link: import("../files/signed-links").LinkClaims;
    /** The upload an upload token is limited to (unset for a user token), set by `authenticate`. */
    uploadScope: string;
  };
}
