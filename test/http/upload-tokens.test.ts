// Upload tokens (docs/auth.md): made at creation for one upload, they write, read, complete and abort
// that upload and nothing else; rate limits still count against the owner.
import { env } from "cloudflare:test";
import { decodeJwt, decodeProtectedHeader, SignJWT } from "jose";
import { describe, expect, it } from "vitest";
import { callJson, callWithVars, putPart, randomBytes, tokenFor } from "../support/http";
import { draftClient } from "../support/resumable";
import { TUS_HEADERS, tusClient } from "../support/tus";

/** Creates a native upload of `size` bytes as `user`, asking for its upload token. */
async function createWithToken(user: string, size: number) {
  const created = await callJson("/v1/uploads", {
    method: "POST",
    token: await tokenFor(user),
    json: { filename: "scoped.bin", size, uploadToken: true },
  });
  expect(created.status).toBe(201);
  return created.body as { uploadId: string; uploadToken: { token: string; expiresAt: string } };
}

/** A 403 `token_scope` (a HEAD answer has no body to carry the code). */
const expectScopeRefusal = (res: { status: number; body: any }, what: string) => {
  expect(res.status, what).toBe(403);
  if (!what.startsWith("HEAD ")) expect(res.body?.error?.code ?? null, what).toBe("token_scope");
};

describe("native uploads with an upload token", () => {
  it("is returned only when asked for, typed and bound to the upload", async () => {
    const plain = await callJson("/v1/uploads", {
      method: "POST",
      token: await tokenFor("scope-plain"),
      json: { filename: "x.bin", size: 3 },
    });
    expect(plain.status).toBe(201);
    expect(plain.body.uploadToken).toBeUndefined();

    const { uploadId, uploadToken } = await createWithToken("scope-shape", 3);
    expect(decodeProtectedHeader(uploadToken.token)).toMatchObject({ alg: "HS256", typ: "du-upload+jwt" });
    const claims = decodeJwt(uploadToken.token);
    expect(claims).toMatchObject({ sub: "scope-shape", upl: uploadId, aud: "durable-uploads:upload" });
    expect(new Date(uploadToken.expiresAt).getTime()).toBe((claims.exp as number) * 1000);
    // At most 7 days (MAX_TOKEN_LIFETIME_SECONDS is 30 days here).
    expect(claims.exp! - Math.floor(Date.now() / 1000)).toBeLessThanOrEqual(7 * 86_400);
    expect(claims.exp! - Math.floor(Date.now() / 1000)).toBeGreaterThan(7 * 86_400 - 60);
  });

  it("uploads parts, reads the status and completes its upload with only the upload token", async () => {
    const bytes = randomBytes(1000);
    const { uploadId, uploadToken } = await createWithToken("scope-flow", bytes.length);
    const token = uploadToken.token;
    const part = await putPart(uploadId, 1, bytes, token);
    expect(part.status).toBe(200);
    // The owner's rate limits apply: the answer carries the owner's RateLimit headers.
    expect(part.headers.get("RateLimit-Policy") ?? part.headers.get("RateLimit")).toBeTruthy();
    const status = await callJson(`/v1/uploads/${uploadId}`, { token });
    expect(status.status).toBe(200);
    expect(status.body).toMatchObject({ uploadId, missingParts: [], bytesReceived: bytes.length });
    const done = await callJson(`/v1/uploads/${uploadId}/complete`, { method: "POST", token });
    expect(done.status).toBe(200);
    expect(done.body.file).toMatchObject({ size: bytes.length, filename: "scoped.bin" });
    // The file belongs to the owner: their own token sees it (the usage settles before the answer).
    const owner = await tokenFor("scope-flow");
    const usage = await callJson("/v1/usage", { token: owner });
    expect(usage.body).toMatchObject({ usedBytes: bytes.length, fileCount: 1, activeUploads: 0 });
    // …and the upload token cannot read it.
    expectScopeRefusal(await callJson(`/v1/files/${done.body.file.id}`, { token }), "GET file");
  });

  it("aborts its own upload", async () => {
    const { uploadId, uploadToken } = await createWithToken("scope-abort", 10);
    expect((await callJson(`/v1/uploads/${uploadId}`, { method: "DELETE", token: uploadToken.token })).status).toBe(
      204,
    );
  });

  it("is refused on every other route, including another upload of the same owner", async () => {
    const user = "scope-refused";
    const mine = await createWithToken(user, 10);
    const other = await createWithToken(user, 10);
    const token = mine.uploadToken.token;
    const fileId = crypto.randomUUID();
    const attempts: Array<[string, RequestInit & { json?: unknown }]> = [
      ["/v1/usage", {}],
      ["/v1/uploads", {}],
      ["/v1/uploads", { method: "POST", json: { filename: "more.bin", size: 1 } }],
      [`/v1/uploads/${other.uploadId}`, {}],
      [`/v1/uploads/${other.uploadId}`, { method: "DELETE" }],
      [`/v1/uploads/${other.uploadId}/parts/1`, { method: "PUT", body: "0123456789" }],
      [`/v1/uploads/${other.uploadId}/complete`, { method: "POST" }],
      // Methods its own upload's routes do not grant.
      [`/v1/uploads/${mine.uploadId}/parts/1`, { method: "POST", body: "0123456789" }],
      [`/v1/uploads/${mine.uploadId}/`, {}],
      [`/v1/uploads/${mine.uploadId.toUpperCase()}`, {}],
      ["/v1/files", {}],
      [`/v1/files/${fileId}`, {}],
      [`/v1/files/${fileId}/content`, {}],
      [`/v1/files/${fileId}`, { method: "DELETE" }],
      [`/v1/files/${fileId}/links`, { method: "POST", json: { expiresIn: 60 } }],
      ["/v1/audit", {}],
      ["/v1/tus", { method: "POST", headers: { ...TUS_HEADERS, "Upload-Length": "1" } }],
      ["/v1/tus", { method: "OPTIONS", headers: TUS_HEADERS }],
      [`/v1/tus/${other.uploadId}`, { method: "HEAD", headers: TUS_HEADERS }],
      ["/v1/resumable", { method: "POST", headers: { "Upload-Draft-Interop-Version": "8", "Upload-Complete": "?0" } }],
    ];
    for (const [path, init] of attempts) {
      const res = await callJson(path, { ...init, token });
      expectScopeRefusal(res, `${init.method ?? "GET"} ${path}`);
    }
    // The owner's own token still works on all of these: nothing about the user changed.
    const owner = await tokenFor(user);
    expect((await callJson("/v1/usage", { token: owner })).status).toBe(200);
    expect((await callJson(`/v1/uploads/${other.uploadId}`, { token: owner })).status).toBe(200);
    // Neither upload moved.
    const view = await callJson(`/v1/uploads/${other.uploadId}`, { token: owner });
    expect(view.body).toMatchObject({ status: "active", bytesReceived: 0 });
  });

  it("is never a user token, and a user token is never an upload token", async () => {
    const { uploadId, uploadToken } = await createWithToken("scope-kinds", 10);
    const claims = decodeJwt(uploadToken.token);
    const secret = new TextEncoder().encode(env.AUTH_SECRET);
    // The upload token's header relabelled as a user token: the signature no longer matches.
    const [, payload, signature] = uploadToken.token.split(".");
    const userHeader = Buffer.from(JSON.stringify({ alg: "HS256", typ: "JWT" })).toString("base64url");
    const relabelled = `${userHeader}.${payload}.${signature}`;
    expect((await callJson("/v1/usage", { token: relabelled })).status).toBe(401);
    // A token typed as an upload token but signed with the user-token secret itself is refused: upload
    // tokens verify only under their own derived key.
    const forged = await new SignJWT(claims).setProtectedHeader({ alg: "HS256", typ: "du-upload+jwt" }).sign(secret);
    expect((await putPart(uploadId, 1, new Uint8Array(10), forged)).status).toBe(401);
  });

  it("spends the owner's request budget", async () => {
    const user = "scope-budget";
    const api = callWithVars({ RATE_LIMIT_BURST: "3", RATE_LIMIT_REQUESTS_PER_SECOND: "1" });
    const created = await api("/v1/uploads", {
      method: "POST",
      token: await tokenFor(user),
      json: { filename: "b.bin", size: 10, uploadToken: true },
    });
    expect(created.status).toBe(201);
    const token = created.body.uploadToken.token;
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await api(`/v1/uploads/${created.body.uploadId}`, { token })).status);
    expect(statuses).toContain(429);
    // The owner shares the same budget.
    expect((await api("/v1/usage", { token: await tokenFor(user) })).status).toBe(429);
  });
});

describe("tus and resumable creations with Prefer: upload-token", () => {
  it("returns the tus upload's token in Upload-Token; PATCH and HEAD work, another upload's do not", async () => {
    const owner = tusClient(await tokenFor("scope-tus"));
    const plain = await owner.create({ length: 10 });
    expect(plain.headers.get("Upload-Token")).toBeNull();
    const created = await owner.create({ length: 10, headers: { Prefer: "respond-async, upload-token" } });
    expect(created.status).toBe(201);
    expect(created.headers.get("Preference-Applied")).toBe("upload-token");
    const token = created.headers.get("Upload-Token")!;
    expect(decodeJwt(token).upl).toBe(created.uploadId);
    const scoped = tusClient(token);

    expect((await scoped.patch(created.uploadId!, 0, randomBytes(4))).status).toBe(204);
    const head = await scoped.head(created.uploadId!);
    expect(head.status).toBe(200);
    expect(head.headers.get("Upload-Offset")).toBe("4");
    // X-HTTP-Method-Override is the method tus acts on: a POST overridden to PATCH is a PATCH.
    const overridden = await callJson(`/v1/tus/${created.uploadId}`, {
      method: "POST",
      token,
      headers: {
        ...TUS_HEADERS,
        "X-HTTP-Method-Override": "PATCH",
        "Content-Type": "application/offset+octet-stream",
        "Upload-Offset": "4",
      },
      body: randomBytes(6),
    });
    expect(overridden.status).toBe(204);
    expect(overridden.headers.get("Upload-File-Location")).toBeTruthy();

    expectScopeRefusal(await scoped.patch(plain.uploadId!, 0, randomBytes(4)), "PATCH another upload");
    expectScopeRefusal(await scoped.create({ length: 1 }), "tus creation");
  });

  it("returns the resumable upload's token; HEAD and PATCH work with it", async () => {
    const owner = draftClient(await tokenFor("scope-resumable"));
    const created = await owner.create({ length: 8, headers: { Prefer: "upload-token" } });
    expect(created.status).toBe(201);
    const token = created.headers.get("Upload-Token")!;
    const scoped = draftClient(token);
    expect((await scoped.append(created.uploadId!, 0, randomBytes(8), true)).status).toBeLessThan(300);
    const head = await scoped.head(created.uploadId!);
    expect(head.status).toBeLessThan(300);
    expect(head.headers.get("Upload-Offset")).toBe("8");
    expectScopeRefusal(await scoped.create({ length: 1 }), "resumable creation");
  });
});
