// The edges of issue 17 that the app itself can see: identities and tokens, signed-link spellings, JSON
// bodies (media type, size, chunked), wrong methods, link rate limits, and a part write that loses the
// race with an abort.
import { env } from "cloudflare:test";
import { sign } from "hono/jwt";
import { describe, expect, it } from "vitest";
import { accountFor } from "../../objects/stubs";
import { call, callJson, callWithVars, MiB, randomBytes, seedFile, tokenFor } from "../support/http";
import { testPolicy } from "../support/objects";

const now = () => Math.floor(Date.now() / 1000);

async function signed(claims: Record<string, unknown>): Promise<string> {
  return sign(claims, env.AUTH_SECRET, "HS256");
}

describe("tokens and user ids", () => {
  it("refuses a token without exp, one that lives longer than the cap, and padded signatures", async () => {
    const noExp = await signed({ sub: "edge-user", iat: now() });
    const res = await callJson("/v1/usage", { token: noExp });
    expect(res.status).toBe(401);
    expect(res.body.error.code).toBe("unauthorized");

    const tooLong = await signed({ sub: "edge-user", iat: now(), exp: now() + 31 * 86_400 });
    expect((await callJson("/v1/usage", { token: tooLong })).status).toBe(401);
    const withinCap = await signed({ sub: "edge-user", iat: now(), exp: now() + 29 * 86_400 });
    expect((await callJson("/v1/usage", { token: withinCap })).status).toBe(200);
    // The cap is a var: a deployment may shorten it.
    const strict = callWithVars({ MAX_TOKEN_LIFETIME_SECONDS: "600" });
    expect((await strict("/v1/usage", { token: await tokenFor("edge-user", 3600) })).status).toBe(401);
    expect((await strict("/v1/usage", { token: await tokenFor("edge-user", 300) })).status).toBe(200);

    const good = await tokenFor("edge-user");
    expect((await callJson("/v1/usage", { token: good })).status).toBe(200);
    for (const padded of [`${good}=`, `${good}==`]) {
      const refused = await callJson("/v1/usage", { token: padded });
      expect(refused.status).toBe(401);
      expect(refused.headers.get("WWW-Authenticate")).toContain("invalid_token");
    }
  });

  it("keeps dot-only and internal names out of the user-id space", async () => {
    for (const sub of [".", "..", ".readyz", "-x", "_x"]) {
      const token = await signed({ sub, exp: now() + 600 });
      const res = await callJson("/v1/usage", { token });
      expect(res.status, sub).toBe(401);
    }
    const admin = { Authorization: `Bearer ${env.ADMIN_TOKEN}` };
    // (`.` and `..` never reach a route in a path: URL parsing resolves them as dot segments first.)
    for (const id of [".readyz", ".x"]) {
      const res = await callJson(`/v1/admin/users/${id}`, { headers: admin });
      expect(res.status, id).toBe(400);
    }
    expect((await callJson("/v1/usage", { token: await signed({ sub: "a.b-c_d", exp: now() + 60 }) })).status).toBe(
      200,
    );
  });
});

describe("JSON bodies", () => {
  it("refuses a body that does not say it is JSON with 415, before reading it", async () => {
    const token = await tokenFor("json-edge");
    const res = await callJson("/v1/uploads", {
      method: "POST",
      token,
      headers: { "Content-Type": "text/plain" },
      body: JSON.stringify({ filename: "a.txt", size: 1 }),
    });
    expect(res.status).toBe(415);
    expect(res.body.error.code).toBe("unsupported_media_type");
  });

  it("caps a JSON body at 64 KiB, declared or chunked, with 413 payload_too_large and nothing created", async () => {
    const token = await tokenFor("json-cap");
    const big = JSON.stringify({ filename: "a.txt", size: 1, metadata: { pad: "x".repeat(70 * 1024) } });
    const declared = await callJson("/v1/uploads", {
      method: "POST",
      token,
      headers: { "Content-Type": "application/json" },
      body: big,
    });
    expect(declared.status).toBe(413);
    expect(declared.body.error.code).toBe("payload_too_large");

    // A stream has no Content-Length: the bytes are counted as they are read, and the cap still holds.
    const bytes = new TextEncoder().encode(big);
    const chunked = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 4096) controller.enqueue(bytes.subarray(i, i + 4096));
        controller.close();
      },
    });
    const streamed = await callJson("/v1/uploads", {
      method: "POST",
      token,
      headers: { "Content-Type": "application/json" },
      body: chunked,
      // @ts-expect-error: `duplex` is required by fetch for a streamed request body.
      duplex: "half",
    });
    expect(streamed.status).toBe(413);
    const usage = await callJson("/v1/usage", { token });
    expect(usage.body).toMatchObject({ reservedBytes: 0, activeUploads: 0 });
  });
});

describe("wrong methods", () => {
  it("answers 405 with Allow on a route that exists for other methods, 404 where nothing does", async () => {
    const token = await tokenFor("method-edge");
    const res = await callJson("/v1/uploads", { method: "PUT", token });
    expect(res.status).toBe(405);
    expect(res.body.error.code).toBe("method_not_allowed");
    expect(res.headers.get("Allow")).toBe("GET, HEAD, POST");
    const nothing = await callJson("/v1/nowhere", { token });
    expect(nothing.status).toBe(404);
    expect(nothing.body.error.code).toBe("route_not_found");
  });
});

describe("signed links", () => {
  it("accept only the canonical expires they were issued with", async () => {
    const file = await seedFile("link-canon", { body: randomBytes(10), filename: "a.bin" });
    const made = await callJson(`/v1/files/${file.id}/links`, {
      method: "POST",
      token: await tokenFor("link-canon"),
      json: { expiresIn: 600 },
    });
    const url = new URL(made.body.url);
    expect((await call(`${url.pathname}${url.search}`)).status).toBe(200);
    const padded = new URL(url);
    padded.searchParams.set("expires", `0${url.searchParams.get("expires")}`);
    const res = await callJson(`${padded.pathname}${padded.search}`);
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe("link_invalid");
  });

  it("spend the owner's request budget, so a flood of link downloads is rate-limited", async () => {
    const owner = "link-flood";
    await accountFor(env, owner).setOverrides(owner, { requestsPerSecond: 1, burst: 3 }, testPolicy({}));
    const file = await seedFile(owner, { body: randomBytes(10), filename: "a.bin" });
    const made = await callJson(`/v1/files/${file.id}/links`, {
      method: "POST",
      token: await tokenFor(owner),
      json: { expiresIn: 600 },
    });
    const url = new URL(made.body.url);
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const res = await call(`${url.pathname}${url.search}`);
      await res.arrayBuffer();
      statuses.push(res.status);
      if (res.status === 429) expect(res.headers.get("Retry-After")).toMatch(/^\d+$/);
    }
    expect(statuses).toContain(429);
    expect(statuses[0]).toBe(200);
  });
});

describe("a part write that loses the race with an abort", () => {
  it("answers 409 upload_not_active, not a short-body 400", async () => {
    const token = await tokenFor("race-abort");
    const created = await callJson("/v1/uploads", {
      method: "POST",
      token,
      json: { filename: "race.bin", size: 10 * MiB },
    });
    expect(created.status).toBe(201);
    const { uploadId, partSize } = created.body;
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(randomBytes(1024));
        await gate;
        controller.enqueue(randomBytes(partSize - 1024));
        controller.close();
      },
    });
    const put = callJson(`/v1/uploads/${uploadId}/parts/1`, {
      method: "PUT",
      token,
      headers: { "Content-Length": String(partSize) },
      body,
      // @ts-expect-error: `duplex` is required by fetch for a streamed request body.
      duplex: "half",
    });
    await new Promise((r) => setTimeout(r, 200));
    expect((await call(`/v1/uploads/${uploadId}`, { method: "DELETE", token })).status).toBe(204);
    release();
    const res = await put;
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe("upload_not_active");
  });
});
