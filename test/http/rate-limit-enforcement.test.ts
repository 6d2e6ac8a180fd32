// Rate limits as the Worker enforces them: per user, by the account object, before a body byte is read,
// with the draft RateLimit headers on every answer. The arithmetic itself (GCRA) and the header syntax are
// pure functions, tested in test/unit/gcra.test.ts.
import { describe, expect, it } from "vitest";
import { callWithVars, MiB, randomBytes, sleep, tokenFor } from "../support/http";

describe("request rate per user", () => {
  it("answers a burst over the limit with 429 and draft headers, then admits after the wait", async () => {
    const api = callWithVars({ RATE_LIMIT_REQUESTS_PER_SECOND: "2", RATE_LIMIT_BURST: "3" });
    const token = await tokenFor("bursty");
    const statuses: number[] = [];
    let refused: Awaited<ReturnType<typeof api>> | undefined;
    for (let i = 0; i < 5; i++) {
      const res = await api("/v1/usage", { token });
      statuses.push(res.status);
      if (res.status === 200) {
        expect(res.headers.get("RateLimit")).toMatch(/^"requests";r=\d+;t=\d+$/);
        expect(res.headers.get("RateLimit-Policy")).toBe('"requests";q=3;w=2');
      } else refused ??= res;
    }
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    expect(refused!.body.error.code).toBe("rate_limited");
    const retryAfter = Number(refused!.headers.get("Retry-After"));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(refused!.headers.get("RateLimit")).toMatch(/^"requests";r=0;t=\d+$/);
    expect(refused!.headers.get("RateLimit-Policy")).toBe('"requests";q=3;w=2');

    // Limits are per user: another user is untouched.
    expect((await api("/v1/usage", { token: await tokenFor("calm") })).status).toBe(200);

    await sleep(retryAfter * 1000);
    expect((await api("/v1/usage", { token })).status).toBe(200);
  });

  it("changes nothing when it refuses", async () => {
    const api = callWithVars({ RATE_LIMIT_REQUESTS_PER_SECOND: "1", RATE_LIMIT_BURST: "1" });
    const token = await tokenFor("refused-create");
    expect((await api("/v1/usage", { token })).status).toBe(200);
    const create = await api("/v1/uploads", { method: "POST", token, json: { filename: "a", size: 10 } });
    expect(create.status).toBe(429);
    await sleep(1100);
    const usage = await api("/v1/usage", { token });
    expect(usage.body).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
  });
});

describe("upload bandwidth per user", () => {
  it("refuses parts over the per-minute byte budget before any byte reaches R2", async () => {
    const api = callWithVars({ RATE_LIMIT_BYTES_PER_MINUTE: String(12 * MiB), PART_SIZE_BYTES: String(5 * MiB) });
    const token = await tokenFor("bandwidth");
    const created = await api("/v1/uploads", { method: "POST", token, json: { filename: "b", size: 15 * MiB } });
    expect(created.status).toBe(201);
    const { uploadId } = created.body;
    const part = (n: number) =>
      api(`/v1/uploads/${uploadId}/parts/${n}`, {
        method: "PUT",
        token,
        body: randomBytes(5 * MiB),
        headers: { "Content-Length": String(5 * MiB) },
      });
    expect((await part(1)).status).toBe(200);
    expect((await part(2)).status).toBe(200);
    const third = await part(3);
    expect(third.status).toBe(429);
    expect(third.body.error.code).toBe("rate_limited");
    expect(third.headers.get("RateLimit-Policy")).toContain('"bytes";q=12582912;qu="content-bytes";w=60');
    expect(Number(third.headers.get("Retry-After"))).toBeGreaterThan(0);
    // The refused part was never written: the session knows parts 1 and 2 only.
    const status = await api(`/v1/uploads/${uploadId}`, { token });
    expect(status.body.parts.map((p: any) => p.partNumber)).toEqual([1, 2]);
    expect(status.body.bytesReceived).toBe(10 * MiB);
  });

  it("refuses a request larger than the whole byte budget with 413 and no Retry-After", async () => {
    const api = callWithVars({ RATE_LIMIT_BYTES_PER_MINUTE: String(6 * MiB), PART_SIZE_BYTES: String(8 * MiB) });
    const token = await tokenFor("too-big-for-budget");
    const created = await api("/v1/uploads", { method: "POST", token, json: { filename: "b", size: 8 * MiB } });
    const res = await api(`/v1/uploads/${created.body.uploadId}/parts/1`, {
      method: "PUT",
      token,
      body: randomBytes(8 * MiB),
      headers: { "Content-Length": String(8 * MiB) },
    });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe("rate_limited");
    expect(res.headers.get("Retry-After")).toBeNull();
  });
});
