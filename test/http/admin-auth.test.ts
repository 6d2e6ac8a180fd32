import { env } from "cloudflare:test";
import { beforeAll, describe, expect, it } from "vitest";
import { adminHeaders, callJson, tokenFor } from "../support/http";

interface Route {
  name: string;
  method: string;
  path: string;
  /** Headers and body for the authorized call, built when it is made (it may need the current version). */
  init?: () => Promise<{ headers?: Record<string, string>; json?: unknown }>;
}

const currentVersion = async () =>
  (await env.DB.prepare("SELECT COALESCE(MAX(version), 0) AS v FROM settings_versions").first<{ v: number }>())!.v;

/** Every route this module adds under /v1/admin. */
const ROUTES: Route[] = [
  { name: "settings", method: "GET", path: "/v1/admin/settings" },
  {
    name: "settings update",
    method: "PUT",
    path: "/v1/admin/settings",
    init: async () => ({ headers: { "If-Match": `"${await currentVersion()}"` }, json: { burst: 150 } }),
  },
  { name: "settings history", method: "GET", path: "/v1/admin/settings/history" },
  { name: "settings rollback", method: "POST", path: "/v1/admin/settings/rollback/1" },
  { name: "stats", method: "GET", path: "/v1/admin/stats" },
  { name: "audit search", method: "GET", path: "/v1/admin/audit?limit=5" },
];

const rowCount = async () =>
  (await env.DB.prepare("SELECT COUNT(*) AS n FROM settings_versions").first<{ n: number }>())!.n;

describe("admin auth matrix", () => {
  let userToken: string;

  beforeAll(async () => {
    userToken = await tokenFor("alice");
    // The rollback route needs a version 1 to roll back to.
    const res = await callJson("/v1/admin/settings", {
      method: "PUT",
      headers: { ...adminHeaders(), "If-Match": '"0"' },
      json: { maxActiveUploads: 7 },
    });
    expect(res.status).toBe(200);
  });

  for (const route of ROUTES) {
    describe(`${route.method} ${route.name}`, () => {
      it("answers 401 with WWW-Authenticate when no token is sent, and changes nothing", async () => {
        const before = await rowCount();
        const init = route.init ? await route.init() : {};
        const res = await callJson(route.path, { method: route.method, headers: init.headers, json: init.json });
        expect(res.status).toBe(401);
        expect(res.body.error.code).toBe("unauthorized");
        expect(res.headers.get("WWW-Authenticate")).toContain("Bearer");
        expect(await rowCount()).toBe(before);
      });

      it("answers 403 for a wrong token, and changes nothing", async () => {
        const before = await rowCount();
        const init = route.init ? await route.init() : {};
        for (const token of ["nope", `${env.ADMIN_TOKEN}x`, env.ADMIN_TOKEN.slice(0, -1)]) {
          const res = await callJson(route.path, {
            method: route.method,
            headers: { ...init.headers, Authorization: `Bearer ${token}` },
            json: init.json,
          });
          expect(res.status, token).toBe(403);
          expect(res.body).toEqual({ error: { code: "forbidden", message: "This token does not grant admin access" } });
        }
        expect(await rowCount()).toBe(before);
      });

      it("answers 403 for a valid user token, and changes nothing", async () => {
        const before = await rowCount();
        const init = route.init ? await route.init() : {};
        const res = await callJson(route.path, {
          method: route.method,
          headers: init.headers,
          json: init.json,
          token: userToken,
        });
        expect(res.status).toBe(403);
        expect(res.body.error.code).toBe("forbidden");
        expect(await rowCount()).toBe(before);
      });

      it("answers 200 for the admin token, not cacheable", async () => {
        const init = route.init ? await route.init() : {};
        const res = await callJson(route.path, {
          method: route.method,
          headers: { ...init.headers, ...adminHeaders() },
          json: init.json,
        });
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        expect(res.headers.get("Cache-Control")).toBe("no-store");
      });
    });
  }
});

describe("admin auth details", () => {
  it("accepts the scheme name in any case (RFC 9110 §11.1)", async () => {
    const res = await callJson("/v1/admin/stats", { headers: { Authorization: `bEaReR ${env.ADMIN_TOKEN}` } });
    expect(res.status).toBe(200);
  });

  it("treats another scheme or empty credentials as no token (401)", async () => {
    for (const value of [`Basic ${btoa(`admin:${env.ADMIN_TOKEN}`)}`, "Bearer", "Bearer   ", env.ADMIN_TOKEN]) {
      const res = await callJson("/v1/admin/stats", { headers: { Authorization: value } });
      expect(res.status, value).toBe(401);
      expect(res.body.error.code).toBe("unauthorized");
    }
  });

  it("guards unknown admin paths too, then answers 404", async () => {
    expect((await callJson("/v1/admin/nothing-here")).status).toBe(401);
    const res = await callJson("/v1/admin/nothing-here", { headers: adminHeaders() });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe("route_not_found");
  });

  it("fails loudly (500) when ADMIN_TOKEN is not configured, rather than accepting anything", async () => {
    const { createApp } = await import("../../src/http/app");
    const broken = { ...env, ADMIN_TOKEN: "" } as unknown as Env;
    for (const auth of ["Bearer ", "Bearer x", undefined]) {
      const res = await createApp().request(
        "/v1/admin/stats",
        { headers: auth ? { Authorization: auth } : {} },
        broken,
      );
      expect(res.status).toBe(500);
      expect(((await res.json()) as any).error.code).toBe("internal_error");
    }
  });
});
