import { env } from "cloudflare:test";
import { sign } from "hono/jwt";
import { describe, expect, it } from "vitest";
import { createApp } from "../../src/http/app";
import { call, callJson, tokenFor } from "../support/http";

describe("health", () => {
  it("answers liveness without touching bindings", async () => {
    const res = await callJson("/healthz");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: "ok" });
    expect(res.headers.get("X-Request-Id")).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("reports every dependency up with a latency", async () => {
    const res = await callJson("/readyz");
    expect(res.status).toBe(200);
    expect(res.body.status).toBe("ready");
    for (const name of ["d1", "r2", "userAccount", "uploadSession"]) {
      expect(res.body.checks[name].status).toBe("up");
      expect(typeof res.body.checks[name].latencyMs).toBe("number");
    }
  });

  it("answers 503 naming what is down when a binding is broken", async () => {
    // A configuration whose D1 binding points at nothing, as a mistyped binding would after a deploy.
    const broken = { ...env, DB: undefined } as unknown as Env;
    const res = await createApp().request("/readyz", {}, broken);
    expect(res.status).toBe(503);
    const body = (await res.json()) as any;
    expect(body.down).toEqual(["d1"]);
    expect(body.checks.d1.status).toBe("down");
    expect(body.checks.r2.status).toBe("up");
  });
});

describe("errors", () => {
  it("answers an unknown route with a 404 JSON error and a request id", async () => {
    const res = await callJson("/no/such/route");
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: { code: "route_not_found", message: "No such route" } });
    expect(res.headers.get("X-Request-Id")).toBeTruthy();
  });

  it("keeps a caller's request id", async () => {
    const res = await call("/healthz", { headers: { "X-Request-Id": "trace-abc-123" } });
    expect(res.headers.get("X-Request-Id")).toBe("trace-abc-123");
  });
});

describe("auth", () => {
  // /v1/usage is the cheapest authenticated route; any authenticated route behaves the same.
  const route = "/v1/usage";

  it("rejects a missing token with 401", async () => {
    const res = await callJson(route);
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe("unauthorized");
    expect(res.headers.get("WWW-Authenticate")).toContain("Bearer");
  });

  it("rejects an expired token", async () => {
    const res = await callJson(route, { token: await tokenFor("alice", -60) });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe("unauthorized");
  });

  it("rejects a tampered token", async () => {
    const token = await tokenFor("alice");
    const [h, p, s] = token.split(".");
    const forged = btoa(JSON.stringify({ sub: "mallory", exp: Math.floor(Date.now() / 1000) + 60 }))
      .replace(/=+$/, "")
      .replace(/\+/g, "-")
      .replace(/\//g, "_");
    expect((await callJson(route, { token: `${h}.${forged}.${s}` })).status).toBe(401);
    const flipped = s.slice(0, -2) + (s.at(-2) === "A" ? "B" : "A") + s.at(-1);
    expect((await callJson(route, { token: `${h}.${p}.${flipped}` })).status).toBe(401);
  });

  it("rejects a token signed with another secret", async () => {
    const token = await sign({ sub: "alice", exp: Math.floor(Date.now() / 1000) + 60 }, "other-secret", "HS256");
    expect((await callJson(route, { token })).status).toBe(401);
  });

  it("rejects a bad subject", async () => {
    for (const sub of ["", "has space", "x".repeat(129), "semi;colon"]) {
      const token = await sign({ sub, exp: Math.floor(Date.now() / 1000) + 60 }, env.AUTH_SECRET, "HS256");
      const res = await callJson(route, { token });
      expect(res.status, `sub ${JSON.stringify(sub)}`).toBe(401);
    }
    const noSub = await sign({ exp: Math.floor(Date.now() / 1000) + 60 }, env.AUTH_SECRET, "HS256");
    expect((await callJson(route, { token: noSub })).status).toBe(401);
  });

  it("accepts a valid token", async () => {
    const res = await callJson(route, { token: await tokenFor("alice") });
    expect(res.status).toBe(200);
  });
});
