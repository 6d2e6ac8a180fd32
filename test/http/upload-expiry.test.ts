// Upload expiry as a client meets it: every accepted part slides the deadline, and a request after it is
// refused even if the session's alarm has not run yet. The alarm's own work (abort, release, checkpoint)
// is tested in test/objects/upload-session-alarms.test.ts.
import { describe, expect, it } from "vitest";
import { callJson, callWithVars, putPart, randomBytes, sleep, tokenFor } from "../support/http";

describe("expiry", () => {
  it("slides the expiry with each accepted part", async () => {
    // The part must land before the upload expires even on a busy machine: 5 s of TTL for a 1.2 s wait.
    const api = callWithVars({ UPLOAD_TTL_SECONDS: "5" });
    const token = await tokenFor("sliding");
    const created = await api("/v1/uploads", { method: "POST", token, json: { filename: "s", size: 100 } });
    const before = Date.parse(created.body.expiresAt);
    await sleep(1200);
    expect((await putPart(created.body.uploadId, 1, randomBytes(100), token)).status).toBe(200);
    const after = Date.parse((await callJson(`/v1/uploads/${created.body.uploadId}`, { token })).body.expiresAt);
    expect(after - before).toBeGreaterThanOrEqual(1000);
  });

  it("is enforced on the next request even before the alarm runs", async () => {
    const api = callWithVars({ UPLOAD_TTL_SECONDS: "1" });
    const token = await tokenFor("lazy-expiry");
    const created = await api("/v1/uploads", { method: "POST", token, json: { filename: "l", size: 100 } });
    await sleep(1100);
    const part = await putPart(created.body.uploadId, 1, randomBytes(100), token);
    expect(part.status).toBe(410);
    const complete = await callJson(`/v1/uploads/${created.body.uploadId}/complete`, { method: "POST", token });
    expect(complete.status).toBe(410);
  });
});
