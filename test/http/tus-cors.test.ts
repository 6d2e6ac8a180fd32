// CORS for browsers: preflights for tus and native routes, exposed headers, configured origins.
import { describe, expect, it } from "vitest";
import { callWithVars, tokenFor } from "../support/http";
import { type Api, TUS_HEADERS, tusClient, worker } from "../support/tus";

const preflight = (api: Api, path: string, origin: string, method: string, headers: string) =>
  api(path, {
    method: "OPTIONS",
    headers: { Origin: origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers },
  });

describe("CORS", () => {
  it("answers preflights for tus and native routes without a token", async () => {
    const cases: [string, string, string][] = [
      ["/v1/tus", "POST", "authorization,tus-resumable,upload-length,upload-metadata"],
      [
        `/v1/tus/${crypto.randomUUID()}`,
        "PATCH",
        "authorization,tus-resumable,upload-offset,content-type,upload-checksum",
      ],
      [`/v1/tus/${crypto.randomUUID()}`, "HEAD", "authorization,tus-resumable"],
      [`/v1/uploads/${crypto.randomUUID()}/parts/1`, "PUT", "authorization,content-digest"],
      ["/v1/files", "GET", "authorization"],
    ];
    for (const [path, method, headers] of cases) {
      const res = await preflight(worker, path, "https://app.example", method, headers);
      expect(res.status, path).toBe(204);
      expect(res.headers.get("Access-Control-Allow-Origin")).toBe("*");
      expect(res.headers.get("Access-Control-Allow-Methods")).toContain(method);
      const allowed = res.headers.get("Access-Control-Allow-Headers")!.toLowerCase().split(/,\s*/);
      for (const h of headers.split(",")) expect(allowed).toContain(h);
      expect(Number(res.headers.get("Access-Control-Max-Age"))).toBeGreaterThan(0);
    }
  });

  it("lets a page read the tus headers and the request id", async () => {
    const token = await tokenFor("tus-cors");
    const res = await worker("/v1/tus", {
      method: "POST",
      token,
      headers: { ...TUS_HEADERS, "Upload-Length": "10", Origin: "https://app.example" },
    });
    expect(res.status).toBe(201);
    expect(res.headers.get("Access-Control-Allow-Origin")).toBe("*");
    const exposed = res.headers.get("Access-Control-Expose-Headers")!.split(/,\s*/);
    for (const h of [
      "Location",
      "Upload-Offset",
      "Upload-Length",
      "Upload-Expires",
      "Upload-Metadata",
      "Upload-Defer-Length",
      "Upload-File-Location",
      "Tus-Resumable",
      "Tus-Version",
      "Tus-Extension",
      "Tus-Max-Size",
      "Tus-Checksum-Algorithm",
      "X-Request-Id",
    ]) {
      expect(exposed).toContain(h);
    }
    // Errors too: a page must be able to read why.
    const refused = await worker("/v1/tus", {
      method: "POST",
      headers: { "Upload-Length": "10", Origin: "https://app.example" },
    });
    expect(refused.status).toBe(412);
    expect(refused.headers.get("Access-Control-Allow-Origin")).toBe("*");
  });

  it("a tus discovery OPTIONS from a page is answered by tus, not taken for a preflight", async () => {
    const res = await worker("/v1/tus", { method: "OPTIONS", headers: { Origin: "https://app.example" } });
    expect(res.status).toBe(204);
    expect(res.headers.get("Tus-Version")).toBe("1.0.0");
    expect(res.headers.get("Access-Control-Allow-Origin")).toBe("*");
  });

  it("with configured origins, allows exactly those and varies on Origin", async () => {
    const api = callWithVars({ CORS_ORIGINS: "https://app.example, http://localhost:5173" });
    const allowed = await preflight(api, "/v1/tus", "https://app.example", "POST", "tus-resumable");
    expect(allowed.headers.get("Access-Control-Allow-Origin")).toBe("https://app.example");
    expect(allowed.headers.get("Vary")).toContain("Origin");
    const other = await preflight(api, "/v1/tus", "https://evil.example", "POST", "tus-resumable");
    expect(other.status).toBe(204);
    expect(other.headers.has("Access-Control-Allow-Origin")).toBe(false);
    const tus = tusClient(await tokenFor("tus-cors-origins"), api);
    const created = await tus.create({ length: 1, headers: { Origin: "http://localhost:5173" } });
    expect(created.headers.get("Access-Control-Allow-Origin")).toBe("http://localhost:5173");
    expect(created.headers.get("Vary")).toContain("Origin");
    const foreign = await tus.create({ length: 1, headers: { Origin: "https://evil.example" } });
    expect(foreign.status).toBe(201);
    expect(foreign.headers.has("Access-Control-Allow-Origin")).toBe(false);
  });
});
