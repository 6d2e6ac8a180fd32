import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type DevServer, startDevServer } from "./harness.ts";

describe("foundation through wrangler dev", () => {
  let server: DevServer;
  beforeAll(async () => {
    server = await startDevServer();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("is ready with every dependency up", async () => {
    const res = await server.fetch("/readyz");
    const body = (await res.json()) as any;
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(Object.values(body.checks).map((c: any) => c.status)).toEqual(["up", "up", "up", "up"]);
  });

  it("applied the migrations to local D1", async () => {
    const tables = (await server.d1("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")).map(
      (r) => r.name,
    );
    expect(tables).toEqual(expect.arrayContaining(["files", "multipart_uploads", "file_access_logs", "user_quotas"]));
  });

  it("authenticates with a token signed by the server's secret and rejects others", async () => {
    const good = await server.fetch("/v1/usage", { token: await server.token("e2e-user") });
    expect(good.status).toBe(200);
    expect(good.headers.get("x-request-id")).toBeTruthy();
    const none = await server.fetch("/v1/usage");
    expect(none.status).toBe(401);
    expect(((await none.json()) as any).error.code).toBe("unauthorized");
  });

  it("answers unknown routes with a JSON 404", async () => {
    const res = await server.fetch("/nope");
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toContain("application/json");
  });
});
