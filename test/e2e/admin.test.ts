// Operator controls end to end: admin auth, a settings change enforced on the next create without a
// deploy, a per-user override, and a request burst answered with 429 and RateLimit headers.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DevServer, startDevServer } from "./harness.ts";

describe("admin and rate limits through wrangler dev", () => {
  let server: DevServer;
  beforeAll(async () => {
    server = await startDevServer({ vars: { RATE_LIMIT_REQUESTS_PER_SECOND: 5, RATE_LIMIT_BURST: 10 } });
  });
  afterAll(async () => {
    await server?.stop();
  });
  const admin = () => ({ Authorization: `Bearer ${server.adminToken}`, "Content-Type": "application/json" });
  const create = async (token: string, size: number) =>
    (
      await server.fetch("/v1/uploads", {
        method: "POST",
        token,
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ filename: "f", size }),
      })
    ).status;

  it("guards admin routes with the admin token only", async () => {
    expect((await server.fetch("/v1/admin/settings")).status).toBe(401);
    expect((await server.fetch("/v1/admin/settings", { headers: { Authorization: "Bearer nope" } })).status).toBe(403);
    expect((await server.fetch("/v1/admin/settings", { token: await server.token("sneaky") })).status).toBe(403);
    expect((await server.fetch("/v1/admin/settings", { headers: admin() })).status).toBe(200);
  });

  it("applies a settings change and a per-user override without a deploy", async () => {
    const token = await server.token("e2e-settings");
    const vip = await server.token("e2e-vip");
    expect(await create(token, 5000)).toBe(201);
    const current = (await (await server.fetch("/v1/admin/settings", { headers: admin() })).json()) as any;
    const put = await server.fetch("/v1/admin/settings", {
      method: "PUT",
      headers: { ...admin(), "If-Match": `"${current.version}"` },
      body: JSON.stringify({ maxFileSizeBytes: 4000 }),
    });
    expect(put.status).toBe(200);
    const stale = await server.fetch("/v1/admin/settings", {
      method: "PUT",
      headers: { ...admin(), "If-Match": `"${current.version}"` },
      body: JSON.stringify({ maxFileSizeBytes: 3000 }),
    });
    expect(stale.status).toBe(412);
    expect(await create(token, 5000)).toBe(413);
    await server.fetch("/v1/admin/users/e2e-vip", {
      method: "PUT",
      headers: admin(),
      body: JSON.stringify({ maxFileSizeBytes: 8000 }),
    });
    expect(await create(vip, 5000)).toBe(201);
    const now = (await (await server.fetch("/v1/admin/settings", { headers: admin() })).json()) as any;
    const reset = await server.fetch("/v1/admin/settings", {
      method: "PUT",
      headers: { ...admin(), "If-Match": `"${now.version}"` },
      body: JSON.stringify({ maxFileSizeBytes: null }),
    });
    expect(reset.status).toBe(200);
    expect(await create(token, 5000)).toBe(201);
  });

  it("answers a burst with 429, Retry-After and RateLimit headers, then recovers", async () => {
    const token = await server.token("e2e-burst");
    const responses = await Promise.all(Array.from({ length: 20 }, () => server.fetch("/v1/usage", { token })));
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(10);
    expect(statuses.filter((s) => s === 200).length).toBeLessThanOrEqual(11);
    const refused = responses.find((r) => r.status === 429)!;
    expect(refused.headers.get("ratelimit-policy")).toBe('"requests";q=10;w=2');
    const wait = Number(refused.headers.get("retry-after"));
    expect(wait).toBeGreaterThanOrEqual(1);
    expect(((await refused.json()) as any).error.code).toBe("rate_limited");
    expect((await server.fetch("/v1/usage", { token: await server.token("e2e-bystander") })).status).toBe(200);
    await new Promise((r) => setTimeout(r, wait * 1000));
    expect((await server.fetch("/v1/usage", { token })).status).toBe(200);
  });
});
