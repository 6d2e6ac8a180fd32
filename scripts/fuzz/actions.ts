// What a lane does: every route of the API, in valid flows (create → parts → complete, tus create →
// PATCH → HEAD → DELETE, downloads with Range and conditionals, links, admin) and in single requests that
// are wrong on purpose. Each action draws from the lane's PRNG and learns from the answers.
import {
  digest,
  encodeSegment,
  type FileRef,
  JSON_TYPE,
  json,
  type Lane,
  MiB,
  parseJson,
  type Spec,
  type UploadRef,
} from "./lane.ts";
import type { WireResponse } from "./wire.ts";

export type Action = (lane: Lane) => Promise<void>;

const OCTETS: [string, string] = ["Content-Type", "application/octet-stream"];
const OFFSET_OCTETS: [string, string] = ["Content-Type", "application/offset+octet-stream"];
const TUS: [string, string] = ["Tus-Resumable", "1.0.0"];

const FILENAMES = [
  "a.txt",
  "photo.jpg",
  "holiday/clip.mov",
  "caf\u00e9 \u00fcber.pdf",
  "\u202eevil\u202dtxt.exe",
  'quote"back\\slash.bin',
  "%41%42.txt",
  "x".repeat(300),
  "..",
  "line\r\nbreak.txt",
  "\u{1F600}.png",
];
const CONTENT_TYPES = ["text/plain", "image/jpeg", "application/pdf", "video/quicktime", "application/x-thing"];

/**
 * Bytes `start` to `end` (exclusive) of the upload (or file) made from `seed`. The stream is mulberry32's,
 * whose state after k draws is `seed + k·0x6d2b79f5`, so any range is made without the bytes before it:
 * a 5 GiB reservation's last part costs no more than its first.
 */
export function contentOf(seed: number, start: number, end: number): Uint8Array {
  const out = new Uint8Array(Math.max(0, end - start));
  for (let pos = start - (start % 4); pos < end; pos += 4) {
    let t = (seed + Math.imul(pos / 4 + 1, 0x6d2b79f5)) >>> 0;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    const v = (t ^ (t >>> 14)) >>> 0;
    for (let b = 0; b < 4; b++) {
      const at = pos + b - start;
      if (at >= 0 && at < out.length) out[at] = (v >>> (8 * b)) & 0xff;
    }
  }
  return out;
}

function partRange(u: UploadRef, n: number): [number, number] {
  const size = u.size ?? 0;
  const start = (n - 1) * u.partSize;
  return [start, Math.min(size, start + u.partSize)];
}

const b64 = (text: string) => Buffer.from(text, "utf8").toString("base64");
const lastSegment = (path: string) => path.split("?")[0].split("/").filter(Boolean).pop() ?? "";

function owner(lane: Lane): number {
  return lane.rng.chance(0.9) ? 0 : 1;
}

function fileFromJson(lane: Lane, value: unknown, ownerIndex: number, contentSeed: number | undefined): void {
  const f = value as { id?: unknown; size?: unknown; etag?: unknown } | null;
  if (!f || typeof f.id !== "string" || typeof f.size !== "number") return;
  if (lane.files.some((x) => x.id === f.id)) return;
  lane.files.push({ id: f.id, owner: ownerIndex, size: f.size, gone: false, contentSeed });
}

function uploadGoneOn(u: UploadRef, res: WireResponse): void {
  if ([404, 410].includes(res.status)) u.gone = true;
  const code = (parseJson(res)?.error as { code?: string } | undefined)?.code;
  if (code === "upload_not_active") u.gone = true;
}

// ---------------------------------------------------------------------------------------------------
// Native uploads
// ---------------------------------------------------------------------------------------------------

async function createNative(lane: Lane, size: number, mutateP: number, who = owner(lane)): Promise<UploadRef | null> {
  const r = lane.rng;
  const contentSeed = r.int(1, 2 ** 31);
  const body: Record<string, unknown> = { filename: r.pick(FILENAMES), size };
  if (r.chance(0.5)) body.contentType = r.pick(CONTENT_TYPES);
  if (size <= 256 * 1024 && r.chance(0.25)) {
    const hash = digest("sha256", contentOf(contentSeed, 0, size), "hex");
    body.sha256 = r.chance(0.8) ? hash : hash.replace(/^./, (c) => (c === "0" ? "1" : "0"));
  }
  if (r.chance(0.2)) body.metadata = { album: "fuzz", n: String(r.int(0, 99)) };
  const res = await lane.send(
    {
      method: "POST",
      target: "/v1/uploads",
      headers: [lane.auth(who), JSON_TYPE],
      body: json(body),
      intent: `create upload size ${size}`,
      auth: `user ${who}`,
    },
    mutateP,
  );
  const j = parseJson(res);
  // An upload made with a mutated token may be someone else's: the lane does not track it.
  if (res.status !== 201 || !j || typeof j.uploadId !== "string" || !lane.sentAsIntended()) return null;
  const u: UploadRef = {
    id: j.uploadId,
    owner: who,
    protocol: "native",
    size: Number(j.size),
    partSize: Number(j.partSize),
    partCount: Number(j.partCount),
    offset: 0,
    contentSeed,
    done: new Set(),
    gone: false,
    tainted: lane.lastMutated,
  };
  lane.uploads.push(u);
  return u;
}

function smallSize(lane: Lane): number {
  return lane.rng.weighted([
    [0, 1],
    [lane.rng.int(1, 64), 4],
    [lane.rng.int(65, 4096), 6],
    [lane.rng.int(4097, 256 * 1024), 1],
  ]);
}

const createUpload: Action = async (lane) => {
  const r = lane.rng;
  const size = r.weighted([
    [smallSize(lane), 10],
    [r.int(1, 512) * MiB, 4],
    [5 * 1024 * MiB + r.int(1, 1000), 1],
    [2 ** 53 - 1, 1],
  ]);
  const u = await createNative(lane, size, 0.35);
  if (u && u.size !== null && u.size > 256 * 1024) u.tainted = true; // a reservation only; never uploaded
};

async function putPart(lane: Lane, u: UploadRef, n: number, mutateP: number, mode?: string): Promise<WireResponse> {
  const r = lane.rng;
  const [start, end] = n >= 1 && n <= u.partCount ? partRange(u, n) : [0, 0];
  const expected = end - start;
  const chosen =
    mode ??
    r.weighted([
      ["exact", 8],
      ["short", 1],
      ["long", 1],
      ["empty", 1],
      ["digest", 2],
      ["digest-wrong", 1],
      ["digest-bad", 1],
      ["digest-512", 1],
    ] as const);
  let data: Uint8Array;
  if (expected >= MiB) {
    // A real ≥ 5 MiB part only while the lane's byte budget lasts; otherwise a deliberately wrong size.
    if (lane.bigBytesLeft >= expected && chosen === "exact") {
      lane.bigBytesLeft -= expected;
      data = contentOf(u.contentSeed, start, end);
    } else {
      data = r.bytes(r.int(0, 100));
    }
  } else {
    const content = contentOf(u.contentSeed, start, end);
    if (chosen === "short") data = content.subarray(0, Math.max(0, content.length - 1));
    else if (chosen === "long") data = new Uint8Array([...content, 1]);
    else if (chosen === "empty") data = new Uint8Array(0);
    else data = content;
  }
  const headers: [string, string][] = [lane.auth(u.owner), OCTETS];
  if (chosen === "digest") headers.push(["Content-Digest", `sha-256=:${digest("sha256", data, "base64")}:`]);
  if (chosen === "digest-512") headers.push(["Content-Digest", `sha-512=:${digest("sha512", data, "base64")}:`]);
  if (chosen === "digest-wrong")
    headers.push(["Content-Digest", `sha-256=:${digest("sha256", r.bytes(8), "base64")}:`]);
  if (chosen === "digest-bad")
    headers.push(["Content-Digest", r.pick(["sha-256=AAAA", "crc32=:AAAA:", "sha-256=:@@:"])]);
  const res = await lane.send(
    {
      method: "PUT",
      target: `/v1/uploads/${u.id}/parts/${n}`,
      headers,
      body: { kind: "fixed", data, contentLength: String(data.length) },
      intent: `part ${n}/${u.partCount} ${chosen} (${data.length} of ${expected} bytes)`,
      auth: `user ${u.owner}`,
    },
    mutateP,
  );
  if (res.status === 200) {
    u.done.add(n);
    if (lane.lastMutated) u.tainted = true;
  }
  uploadGoneOn(u, res);
  return res;
}

function pickNative(lane: Lane): UploadRef | null {
  const live = lane.liveUploads("native");
  return live.length > 0 ? lane.rng.pick(live) : null;
}

const putSomePart: Action = async (lane) => {
  const r = lane.rng;
  const u = pickNative(lane);
  if (!u) return createUpload(lane);
  const missing = Array.from({ length: Math.min(u.partCount, 10_000) }, (_, i) => i + 1).filter((n) => !u.done.has(n));
  const n = r.weighted([
    [missing.length > 0 ? r.pick(missing) : 1, 7],
    [r.int(1, Math.max(1, u.partCount)), 2],
    [0, 1],
    [u.partCount + 1, 1],
  ]);
  await putPart(lane, u, n, 0.25);
};

async function complete(lane: Lane, u: UploadRef, mutateP: number): Promise<WireResponse> {
  const res = await lane.send(
    {
      method: "POST",
      target: `/v1/uploads/${u.id}/complete`,
      headers: [lane.auth(u.owner)],
      intent: "complete upload",
      auth: `user ${u.owner}`,
    },
    mutateP,
  );
  const j = parseJson(res);
  if (res.status === 200 && j?.file) {
    fileFromJson(lane, j.file, u.owner, u.tainted ? undefined : u.contentSeed);
    u.gone = true;
  }
  uploadGoneOn(u, res);
  return res;
}

const completeSome: Action = async (lane) => {
  const u = pickNative(lane);
  if (u) await complete(lane, u, 0.25);
};

const abortSome: Action = async (lane) => {
  const r = lane.rng;
  // Half the time the largest reservation, so the lane's quota does not fill up with them.
  const live = lane.liveUploads("native").sort((a, b) => (b.size ?? 0) - (a.size ?? 0));
  const u = r.chance(0.85) ? (r.chance(0.5) ? (live[0] ?? null) : pickNative(lane)) : null;
  const id = u?.id ?? lane.strangeId();
  const who = u?.owner ?? 0;
  const res = await lane.send({
    method: "DELETE",
    target: `/v1/uploads/${encodeSegment(id)}`,
    headers: [lane.auth(who)],
    intent: "abort upload",
    auth: `user ${who}`,
  });
  if (u && res.status === 204) u.gone = true;
};

const getUpload: Action = async (lane) => {
  const r = lane.rng;
  const any = lane.uploads.length > 0 && r.chance(0.85) ? r.pick(lane.uploads) : null;
  const who = any && r.chance(0.85) ? any.owner : 1 - (any?.owner ?? 1);
  await lane.send({
    method: "GET",
    target: `/v1/uploads/${encodeSegment(any?.id ?? lane.strangeId())}`,
    headers: [lane.auth(who)],
    intent: "get upload",
    auth: `user ${who}`,
  });
};

const listUploads: Action = async (lane) => {
  const r = lane.rng;
  const q = [`limit=${r.pick(["1", "2", "5", "100", "1000"])}`];
  if (lane.cursors.uploads && r.chance(0.5)) q.push(`cursor=${lane.cursors.uploads}`);
  const res = await lane.send({
    method: "GET",
    target: `/v1/uploads?${q.join("&")}`,
    headers: [lane.auth(owner(lane))],
    intent: "list uploads",
  });
  const next = parseJson(res)?.nextCursor;
  if (typeof next === "string") lane.cursors.uploads = next;
};

/** A whole small native upload, mostly valid: create, every part (in any order), complete. */
const nativeFlow: Action = async (lane) => {
  const r = lane.rng;
  const u = await createNative(lane, smallSize(lane), 0.03);
  if (!u) return;
  const order = Array.from({ length: u.partCount }, (_, i) => i + 1).sort(() => r.next() - 0.5);
  for (const n of order) await putPart(lane, u, n, 0.04, r.chance(0.85) ? "exact" : undefined);
  if (r.chance(0.1)) return; // left active on purpose: the ledger must show it as reserved
  const res = await complete(lane, u, 0.04);
  if (res.status === 200 && r.chance(0.3)) await content(lane, lane.files[lane.files.length - 1]);
};

/** A native upload with a real ≥ 5 MiB part, then a download across the part boundary. */
const bigNativeFlow: Action = async (lane) => {
  const r = lane.rng;
  const size = 5 * MiB + r.int(1, 4096);
  if (lane.bigBytesLeft < size) return nativeFlow(lane);
  const u = await createNative(lane, size, 0);
  if (!u) return;
  const order = Array.from({ length: u.partCount }, (_, i) => i + 1).sort(() => r.next() - 0.5);
  for (const n of order) await putPart(lane, u, n, 0, "exact");
  const res = await complete(lane, u, 0);
  if (res.status === 200) await content(lane, lane.files[lane.files.length - 1], u.partSize);
};

// ---------------------------------------------------------------------------------------------------
// tus
// ---------------------------------------------------------------------------------------------------

function tusMetadata(lane: Lane): string {
  const r = lane.rng;
  const pairs = [`filename ${b64(r.pick(FILENAMES))}`];
  if (r.chance(0.6)) pairs.push(`filetype ${b64(r.pick(CONTENT_TYPES))}`);
  if (r.chance(0.3)) pairs.push(`album ${b64("fuzz")}`);
  if (r.chance(0.1)) pairs.push("empty");
  return pairs.join(",");
}

function learnTusFile(lane: Lane, u: UploadRef, res: WireResponse): void {
  const location = res.headers["upload-file-location"];
  if (!location) return;
  const id = lastSegment(location);
  if (!lane.files.some((f) => f.id === id)) {
    lane.files.push({
      id,
      owner: u.owner,
      size: u.size ?? u.offset,
      gone: false,
      contentSeed: u.tainted ? undefined : u.contentSeed,
      tusUpload: u.id,
    });
  }
  u.gone = true;
}

async function tusCreate(
  lane: Lane,
  size: number | null,
  firstBytes: number,
  mutateP: number,
): Promise<UploadRef | null> {
  const r = lane.rng;
  const who = owner(lane);
  const contentSeed = r.int(1, 2 ** 31);
  const headers: [string, string][] = [TUS, lane.auth(who)];
  headers.push(size === null ? ["Upload-Defer-Length", "1"] : ["Upload-Length", String(size)]);
  if (r.chance(0.9)) headers.push(["Upload-Metadata", tusMetadata(lane)]);
  const spec: Spec = {
    method: "POST",
    target: r.chance(0.1) ? "/v1/tus/" : "/v1/tus",
    headers,
    intent: "tus create",
    auth: `user ${who}`,
  };
  if (firstBytes > 0) {
    const data = contentOf(contentSeed, 0, firstBytes);
    headers.push(OFFSET_OCTETS);
    spec.body = { kind: "fixed", data };
    spec.intent = `tus create with ${firstBytes} bytes`;
  }
  spec.intent += size === null ? " (deferred length)" : ` (length ${size})`;
  const res = await lane.send(spec, mutateP);
  const location = res.headers.location;
  if (!location?.includes("/v1/tus/") || !lane.sentAsIntended()) return null;
  const id = lastSegment(location);
  if (lane.uploads.some((x) => x.id === id)) return null;
  const u: UploadRef = {
    id,
    owner: who,
    protocol: "tus",
    size,
    partSize: 0,
    partCount: 0,
    offset: Number(res.headers["upload-offset"] ?? 0) || 0,
    contentSeed,
    done: new Set(),
    gone: false,
    tainted: lane.lastMutated,
  };
  lane.uploads.push(u);
  learnTusFile(lane, u, res);
  return u;
}

const tusCreateSome: Action = async (lane) => {
  const r = lane.rng;
  const size = r.weighted([
    [smallSize(lane), 8],
    [null, 3],
    [r.int(1, 512) * MiB, 2],
  ]);
  const first = size !== null && size > 0 && size <= 4096 && r.chance(0.3) ? r.int(1, size) : 0;
  await tusCreate(lane, size, first, 0.3);
};

async function tusPatch(
  lane: Lane,
  u: UploadRef,
  length: number,
  mutateP: number,
  plain = false,
): Promise<WireResponse> {
  const r = lane.rng;
  const total = u.size ?? u.offset + length + (r.chance(0.5) ? 0 : r.int(1, 4096));
  const data = contentOf(u.contentSeed, u.offset, u.offset + length);
  let offset = String(u.offset);
  if (!plain && r.chance(0.1)) offset = r.pick([String(u.offset + 1), String(Math.max(0, u.offset - 1)), "0"]);
  const headers: [string, string][] = [TUS, lane.auth(u.owner), OFFSET_OCTETS, ["Upload-Offset", offset]];
  let declared: number | null = null;
  if (u.size === null && (plain || r.chance(0.4))) {
    declared = r.chance(0.7) ? u.offset + length : total;
    headers.push(["Upload-Length", String(declared)]);
  }
  if (!plain && r.chance(0.2)) {
    const alg = r.pick(["sha1", "sha256", "md5"] as const);
    const sum = r.chance(0.8) ? digest(alg, data, "base64") : digest(alg, r.bytes(4), "base64");
    headers.push(["Upload-Checksum", `${alg} ${sum}`]);
  }
  let method = "PATCH";
  if (!plain && r.chance(0.1)) {
    method = "POST";
    headers.push(["X-HTTP-Method-Override", "PATCH"]);
  }
  const res = await lane.send(
    {
      method,
      target: `/v1/tus/${u.id}`,
      headers,
      body: { kind: "fixed", data, contentLength: String(data.length) },
      intent: `tus PATCH ${length} bytes at ${offset}${declared !== null ? ` declaring ${declared}` : ""}`,
      auth: `user ${u.owner}`,
    },
    mutateP,
  );
  if (res.status === 204) {
    if (lane.lastMutated) u.tainted = true;
    if (declared !== null) u.size = declared;
    const next = Number(res.headers["upload-offset"]);
    if (Number.isSafeInteger(next)) u.offset = next;
    learnTusFile(lane, u, res);
  } else if (res.status === 409) {
    const details = (parseJson(res)?.error as { details?: { offset?: unknown } } | undefined)?.details;
    if (typeof details?.offset === "number") u.offset = details.offset;
    else uploadGoneOn(u, res);
  } else {
    uploadGoneOn(u, res);
  }
  return res;
}

function pickTus(lane: Lane): UploadRef | null {
  const live = lane.liveUploads("tus");
  return live.length > 0 ? lane.rng.pick(live) : null;
}

const tusPatchSome: Action = async (lane) => {
  const r = lane.rng;
  const u = pickTus(lane);
  if (!u) return tusCreateSome(lane);
  const remaining = u.size === null ? r.int(1, 4096) : u.size - u.offset;
  if (remaining > 256 * 1024) {
    // A reservation-sized upload: bytes that do not reach the end, or a wrong offset.
    await tusPatch(lane, u, r.int(1, 4096), 0.3);
    return;
  }
  const length = r.weighted([
    [remaining, 4],
    [r.int(0, Math.max(0, remaining)), 4],
    [0, 1],
  ]);
  await tusPatch(lane, u, length, 0.2);
};

const tusHead: Action = async (lane) => {
  const r = lane.rng;
  const u = lane.uploads.filter((x) => x.protocol === "tus");
  const target = u.length > 0 && r.chance(0.85) ? r.pick(u) : null;
  const who = target ? (r.chance(0.9) ? target.owner : 1 - target.owner) : 0;
  const res = await lane.send({
    method: r.chance(0.85) ? "HEAD" : "GET",
    target: `/v1/tus/${encodeSegment(target?.id ?? lane.strangeId())}`,
    headers: [TUS, lane.auth(who)],
    intent: "tus HEAD",
    auth: `user ${who}`,
  });
  if (target && res.status === 200 && who === target.owner) {
    const offset = Number(res.headers["upload-offset"]);
    if (Number.isSafeInteger(offset)) target.offset = offset;
    learnTusFile(lane, target, res);
  } else if (target && who === target.owner) {
    uploadGoneOn(target, res);
  }
};

const tusDelete: Action = async (lane) => {
  const r = lane.rng;
  const all = lane.uploads.filter((x) => x.protocol === "tus");
  const u = all.length > 0 && r.chance(0.9) ? r.pick(all) : null;
  const res = await lane.send({
    method: r.chance(0.9) ? "DELETE" : "POST",
    target: `/v1/tus/${encodeSegment(u?.id ?? lane.strangeId())}`,
    headers: [
      TUS,
      lane.auth(u?.owner ?? 0),
      ...(r.chance(0.1) ? [["X-HTTP-Method-Override", "DELETE"] as [string, string]] : []),
    ],
    intent: "tus DELETE",
    auth: `user ${u?.owner ?? 0}`,
  });
  if (u && res.status === 204) {
    u.gone = true;
    // Terminating a completed upload deletes its file.
    for (const f of lane.files) if (f.owner === u.owner && f.tusUpload === u.id) f.gone = true;
  }
};

const tusOptions: Action = async (lane) => {
  const r = lane.rng;
  const headers: [string, string][] = [];
  if (r.chance(0.5)) headers.push(lane.auth(0));
  if (r.chance(0.5)) headers.push(TUS);
  await lane.send({
    method: "OPTIONS",
    target: r.pick(["/v1/tus", "/v1/tus/", `/v1/tus/${encodeSegment(lane.strangeId())}`]),
    headers,
    intent: "tus OPTIONS",
  });
};

/** A whole tus upload, mostly valid: create (maybe with the first bytes), PATCHes to the end. */
const tusFlow: Action = async (lane) => {
  const r = lane.rng;
  const deferred = r.chance(0.25);
  const size = smallSize(lane);
  const first = size > 0 && r.chance(0.4) ? r.int(1, size) : 0;
  const u = await tusCreate(lane, deferred ? null : size, deferred ? 0 : first, 0.03);
  if (!u) return;
  for (let i = 0; i < 6 && !u.gone; i++) {
    const remaining = (u.size ?? size) - u.offset;
    if (remaining < 0) break;
    if (remaining === 0 && u.size !== null) break;
    const length = r.chance(0.5) ? remaining : r.int(0, remaining);
    if (u.size === null && length === remaining) {
      await tusPatch(lane, u, length, 0.03, true);
    } else {
      await tusPatch(lane, u, length, 0.03);
    }
  }
  if (r.chance(0.3)) await tusHead(lane);
};

/** A tus upload with real ≥ 5 MiB of bytes in chunks that cross the part boundary (the tail logic). */
const bigTusFlow: Action = async (lane) => {
  const r = lane.rng;
  const size = 5 * MiB + r.int(1, MiB);
  if (lane.bigBytesLeft < size) return tusFlow(lane);
  lane.bigBytesLeft -= size;
  const u = await tusCreate(lane, size, 0, 0);
  if (!u) return;
  const plan = r.pick([[size], [3 * MiB, 3 * MiB], [MiB + 17, 4 * MiB, MiB], [2 * MiB, 2 * MiB, 2 * MiB]]);
  for (const chunk of plan) {
    if (u.gone || u.offset >= size) break;
    await tusPatch(lane, u, Math.min(chunk, size - u.offset), 0, true);
  }
  if (u.offset < size && !u.gone) await tusPatch(lane, u, size - u.offset, 0, true);
  const f = lane.files.find((x) => x.tusUpload === u.id);
  if (f) await content(lane, f, 5 * MiB);
};

// ---------------------------------------------------------------------------------------------------
// Files, downloads, links, audit
// ---------------------------------------------------------------------------------------------------

function pickFile(lane: Lane): FileRef | null {
  const r = lane.rng;
  const live = lane.liveFiles();
  if (live.length > 0 && r.chance(0.85)) return r.pick(live);
  if (lane.files.length > 0 && r.chance(0.5)) return r.pick(lane.files);
  return null;
}

const listFiles: Action = async (lane) => {
  const r = lane.rng;
  const q: string[] = [];
  if (r.chance(0.7)) q.push(`limit=${r.pick(["1", "3", "100", "1000"])}`);
  if (lane.cursors.files && r.chance(0.4)) q.push(`cursor=${lane.cursors.files}`);
  if (r.chance(0.2)) q.push(`prefix=${encodeURIComponent([...r.pick(FILENAMES)].slice(0, r.int(0, 5)).join(""))}`);
  const res = await lane.send({
    method: "GET",
    target: `/v1/files${q.length ? `?${q.join("&")}` : ""}`,
    headers: [lane.auth(owner(lane))],
    intent: "list files",
  });
  const next = parseJson(res)?.nextCursor;
  if (typeof next === "string") lane.cursors.files = next;
};

const getFile: Action = async (lane) => {
  const r = lane.rng;
  const f = pickFile(lane);
  const who = f && r.chance(0.85) ? f.owner : 1 - (f?.owner ?? 1);
  await lane.send({
    method: "GET",
    target: `/v1/files/${encodeSegment(f?.id ?? lane.strangeId())}`,
    headers: [lane.auth(who)],
    intent: "file metadata",
    auth: `user ${who}`,
  });
};

/** The Range header to try on a file of `size` (`boundary`: a part boundary worth crossing). */
function rangeFor(lane: Lane, size: number, boundary?: number): string | null {
  const r = lane.rng;
  if (boundary !== undefined && boundary < size) return `bytes=${boundary - 10}-${boundary + 9}`;
  return r.weighted([
    [null, 6],
    [`bytes=0-${Math.max(0, r.int(0, size))}`, 3],
    [`bytes=${r.int(0, size + 2)}-`, 2],
    [`bytes=-${r.int(0, size + 2)}`, 2],
    [`bytes=${size}-`, 1],
    [`BYTES = ${r.int(0, 3)} - ${r.int(3, 9)}`, 1],
    ["bytes=0-1,5-9", 1],
    ["bytes=abc", 1],
  ] as const);
}

/** Checks downloaded bytes against the bytes uploaded; a mismatch is a finding. */
function verifyBody(lane: Lane, f: FileRef, res: WireResponse, method: string): void {
  // A body cut short is a finding of its own (short-response); only whole bodies are compared.
  if (f.contentSeed === undefined || method !== "GET" || ![200, 206].includes(res.status) || res.incomplete) return;
  let expected: Uint8Array;
  if (res.status === 206) {
    const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(res.headers["content-range"] ?? "");
    if (!m) {
      lane.note("content-mismatch", `206 without a valid Content-Range for file ${f.id}`);
      return;
    }
    expected = contentOf(f.contentSeed, Number(m[1]), Number(m[2]) + 1);
  } else {
    expected = contentOf(f.contentSeed, 0, f.size);
  }
  if (Buffer.compare(Buffer.from(expected), Buffer.from(res.body)) !== 0) {
    let at = 0;
    while (at < expected.length && at < res.body.length && expected[at] === res.body[at]) at++;
    lane.note(
      "content-mismatch",
      `${res.status} of file ${f.id} (${f.size} bytes, ${res.headers["content-range"] ?? "whole"}): ` +
        `${res.body.length} bytes received, ${expected.length} expected, first difference at byte ${at} of the body`,
    );
  }
}

async function content(lane: Lane, f: FileRef | undefined, boundary?: number): Promise<void> {
  const r = lane.rng;
  const file = f ?? pickFile(lane);
  const who = file && r.chance(0.9) ? file.owner : 1 - (file?.owner ?? 1);
  const method = boundary !== undefined || r.chance(0.8) ? "GET" : "HEAD";
  const headers: [string, string][] = [lane.auth(who)];
  const range = rangeFor(lane, file?.size ?? 10, boundary);
  if (range) headers.push(["Range", range]);
  if (boundary === undefined && r.chance(0.25)) {
    const etag = file?.etag ?? '"x"';
    const [name, value] = r.pick([
      ["If-None-Match", etag],
      ["If-None-Match", `W/${etag}`],
      ["If-Match", etag],
      ["If-Match", '"other"'],
      ["If-Modified-Since", file?.lastModified ?? "Sun, 06 Nov 1994 08:49:37 GMT"],
      ["If-Unmodified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"],
      ["If-Range", etag],
      ["If-Range", file?.lastModified ?? "nope"],
    ] as const);
    headers.push([name, value]);
  }
  const res = await lane.send(
    {
      method,
      target: `/v1/files/${encodeSegment(file?.id ?? lane.strangeId())}/content`,
      headers,
      intent: `download${range ? ` ${range}` : ""}`,
      auth: `user ${who}`,
    },
    boundary === undefined ? 0.15 : 0,
  );
  if (file && res.status === 200 && who === file.owner) {
    file.etag = res.headers.etag ?? file.etag;
    file.lastModified = res.headers["last-modified"] ?? file.lastModified;
  }
  if (file && who === file.owner && !lane.lastMutated) verifyBody(lane, file, res, method);
}

const download: Action = (lane) => content(lane, undefined);

const deleteFile: Action = async (lane) => {
  const r = lane.rng;
  const f = pickFile(lane);
  const who = f && r.chance(0.9) ? f.owner : 1 - (f?.owner ?? 1);
  const res = await lane.send({
    method: "DELETE",
    target: `/v1/files/${encodeSegment(f?.id ?? lane.strangeId())}`,
    headers: [lane.auth(who)],
    intent: "delete file",
    auth: `user ${who}`,
  });
  if (f && res.status === 204) f.gone = true;
  if (f) f.deleteTried = true;
};

const createLink: Action = async (lane) => {
  const r = lane.rng;
  const f = pickFile(lane);
  const who = f && r.chance(0.9) ? f.owner : 1 - (f?.owner ?? 1);
  const res = await lane.send({
    method: "POST",
    target: `/v1/files/${encodeSegment(f?.id ?? lane.strangeId())}/links`,
    headers: [lane.auth(who), JSON_TYPE],
    body: json({ expiresIn: r.pick([1, 60, 3600, 604_800]) }),
    intent: "create link",
    auth: `user ${who}`,
  });
  const url = parseJson(res)?.url;
  if (res.status === 201 && typeof url === "string") {
    const u = new URL(url);
    lane.links.push(u.pathname + u.search);
  }
};

/** A presigned link, as issued or changed in one way the signature must catch. */
function tamper(lane: Lane, link: string): [string, string] {
  const r = lane.rng;
  const u = new URL(link, "http://x");
  const p = u.searchParams;
  const how = r.weighted([
    ["as issued", 6],
    ["signature byte", 1],
    ["signature padded", 1],
    ["expires leading zero", 1],
    ["expires +1", 1],
    ["owner", 1],
    ["missing signature", 1],
    ["file id", 1],
  ] as const);
  const sig = p.get("signature") ?? "";
  if (how === "signature byte") p.set("signature", sig.slice(0, -1) + (sig.endsWith("A") ? "B" : "A"));
  if (how === "signature padded") p.set("signature", `${sig}=`);
  if (how === "expires leading zero") p.set("expires", `0${p.get("expires")}`);
  if (how === "expires +1") p.set("expires", String(Number(p.get("expires")) + 1));
  if (how === "owner") p.set("owner", lane.users[1].id);
  if (how === "missing signature") p.delete("signature");
  const path = how === "file id" ? u.pathname.replace(/[^/]+$/, crypto.randomUUID()) : u.pathname;
  return [`${path}?${p.toString()}`, how];
}

const linkDownload: Action = async (lane) => {
  const r = lane.rng;
  if (lane.links.length === 0) return createLink(lane);
  const [target, how] = tamper(lane, r.pick(lane.links));
  const headers: [string, string][] = [];
  if (r.chance(0.3)) headers.push(["Range", rangeFor(lane, 100) ?? "bytes=0-0"]);
  await lane.send(
    { method: r.chance(0.8) ? "GET" : "HEAD", target, headers, intent: `link download (${how})`, auth: "none" },
    0.15,
  );
};

const auditLog: Action = async (lane) => {
  const r = lane.rng;
  const q: string[] = [];
  if (r.chance(0.5)) q.push(`limit=${r.pick(["1", "10", "1000"])}`);
  if (r.chance(0.3))
    q.push(`action=${r.pick(["upload.create", "upload.part", "file.download", "file.link_download"])}`);
  if (lane.cursors.audit && r.chance(0.4)) q.push(`cursor=${lane.cursors.audit}`);
  const res = await lane.send({
    method: "GET",
    target: `/v1/audit${q.length ? `?${q.join("&")}` : ""}`,
    headers: [lane.auth(owner(lane))],
    intent: "audit log",
  });
  const next = parseJson(res)?.nextCursor;
  if (typeof next === "string") lane.cursors.audit = next;
};

const usage: Action = async (lane) => {
  await lane.send({ method: "GET", target: "/v1/usage", headers: [lane.auth(owner(lane))], intent: "usage" }, 0.3);
};

const health: Action = async (lane) => {
  await lane.send(
    { method: "GET", target: lane.rng.pick(["/healthz", "/readyz"]), headers: [], intent: "health" },
    0.3,
  );
};

// ---------------------------------------------------------------------------------------------------
// Admin
// ---------------------------------------------------------------------------------------------------

/** Setting keys whose current value is written back unchanged: admin writes never change behaviour. */
const NOOP_KEYS = ["burst", "requestsPerSecond", "maxActiveUploads", "uploadTtlSeconds", "corsOrigins"];

async function readSettings(lane: Lane): Promise<void> {
  const res = await lane.send(
    { method: "GET", target: "/v1/admin/settings", headers: [lane.admin()], intent: "admin settings" },
    0.2,
  );
  const j = parseJson(res);
  if (res.status === 200 && j && typeof j.settings === "object") {
    lane.settings = j.settings as Record<string, unknown>;
    lane.settingsEtag = res.headers.etag ?? null;
  }
}

const adminSettings: Action = async (lane) => {
  const r = lane.rng;
  if (!lane.settings || r.chance(0.3)) return readSettings(lane);
  const key = r.pick(NOOP_KEYS);
  const body = r.weighted([
    [{ [key]: lane.settings[key] }, 6],
    [{ [key]: null }, 1],
    [{}, 1],
    [{ nope: 1 }, 1],
    [{ burst: 0 }, 1],
    [{ partSizeBytes: 1 }, 1],
  ] as const);
  // `null` removes an override only where none is stored, so it never changes a value either.
  const safeBody = body && Object.values(body).includes(null) ? { [key]: lane.settings[key] } : body;
  const ifMatch = r.weighted([
    [lane.settingsEtag ?? '"0"', 5],
    ['"0"', 1],
    ["*", 1],
    [`W/${lane.settingsEtag ?? '"0"'}`, 1],
    [null, 1],
    ["garbage", 1],
  ] as const);
  const headers: [string, string][] = [lane.admin(), JSON_TYPE];
  if (ifMatch !== null) headers.push(["If-Match", ifMatch]);
  if (r.chance(0.3)) headers.push(["X-Admin-Actor", r.pick(["fuzz@example.com", "bad actor!"])]);
  const res = await lane.send(
    {
      method: "PUT",
      target: "/v1/admin/settings",
      headers,
      body: json(safeBody),
      intent: "admin settings PUT (no-op values)",
    },
    0.1,
  );
  const j = parseJson(res);
  if (res.status === 200 && j && typeof j.version === "number") {
    lane.settingsVersions.push(j.version);
    lane.settingsEtag = res.headers.etag ?? lane.settingsEtag;
  }
};

const adminHistory: Action = async (lane) => {
  const r = lane.rng;
  const q = r.pick([
    "",
    "?limit=1",
    "?limit=100",
    "?limit=101",
    "?cursor=2",
    "?cursor=x",
    "?nope=1",
    "?limit=&cursor=",
  ]);
  await lane.send({
    method: "GET",
    target: `/v1/admin/settings/history${q}`,
    headers: [lane.admin()],
    intent: "settings history",
  });
};

const adminRollback: Action = async (lane) => {
  const r = lane.rng;
  // Only to versions this run wrote: they all hold the values already in force.
  const version = r.weighted([
    [lane.settingsVersions.length > 0 ? String(r.pick(lane.settingsVersions)) : "0", 4],
    ["0", 1],
    ["999999", 1],
    ["x", 1],
    ["-1", 1],
  ] as const);
  const headers: [string, string][] = [lane.admin()];
  if (r.chance(0.3)) headers.push(["If-Match", r.pick(['"1"', "*", 'W/"1"'])]);
  await lane.send({
    method: "POST",
    target: `/v1/admin/settings/rollback/${version}`,
    headers,
    intent: "settings rollback",
  });
};

const adminStats: Action = async (lane) => {
  await lane.send({ method: "GET", target: "/v1/admin/stats", headers: [lane.admin()], intent: "admin stats" });
};

const adminAudit: Action = async (lane) => {
  const r = lane.rng;
  const q = r.pick([
    "",
    `?userId=${lane.users[0].id}`,
    "?action=upload.part&limit=5",
    "?since=2026-01-01",
    "?since=2026-01-01T00:00:00Z",
    `?since=${Date.now() - 60_000}`,
    "?since=tomorrow",
    "?limit=201",
    "?cursor=abc",
    "?userId=a%20b",
  ]);
  await lane.send({ method: "GET", target: `/v1/admin/audit${q}`, headers: [lane.admin()], intent: "admin audit" });
};

const adminUsers: Action = async (lane) => {
  const r = lane.rng;
  const id = r.weighted([
    [lane.users[r.int(0, 1)].id, 6],
    [encodeSegment(r.pick([".", "..", ".readyz", "a b", "x".repeat(129), "%00"])), 2],
  ] as const);
  const kind = r.weighted([
    ["get", 4],
    ["put", 2],
    ["token", 2],
  ] as const);
  if (kind === "get") {
    await lane.send({ method: "GET", target: `/v1/admin/users/${id}`, headers: [lane.admin()], intent: "admin user" });
  } else if (kind === "put") {
    // Overrides removed (none are ever set) or junk: a user's limits never change.
    const body = r.pick([
      { burst: null },
      { quotaBytes: null, maxActiveUploads: null },
      { nope: 1 },
      { quotaBytes: -1 },
      {},
    ]);
    await lane.send({
      method: "PUT",
      target: `/v1/admin/users/${id}`,
      headers: [lane.admin(), JSON_TYPE],
      body: json(body),
      intent: "admin user PUT (no-op)",
    });
  } else {
    const ttl = r.pick([undefined, 60, 900, 59, 86_401, "900"]);
    const res = await lane.send({
      method: "POST",
      target: `/v1/admin/users/${id}/tokens`,
      headers: [lane.admin(), JSON_TYPE],
      body: ttl === undefined ? { kind: "fixed", data: new Uint8Array(0) } : json({ ttlSeconds: ttl }),
      intent: "admin mint token",
    });
    const token = parseJson(res)?.token;
    // A minted token is as good as a signed one (it may expire within a minute, so it is used at once).
    if (res.status === 201 && typeof token === "string") {
      await lane.send(
        {
          method: "GET",
          target: "/v1/usage",
          headers: [["Authorization", `Bearer ${token}`]],
          intent: "usage, minted token",
        },
        0,
      );
    }
  }
};

const adminWithoutToken: Action = async (lane) => {
  const r = lane.rng;
  const auth = r.pick([
    [] as [string, string][],
    [lane.auth(0)],
    [["Authorization", "Bearer nope"] as [string, string]],
  ]);
  await lane.send({
    method: r.pick(["GET", "PUT", "POST"]),
    target: r.pick(["/v1/admin/settings", "/v1/admin/stats", "/v1/admin/nope", `/v1/admin/users/${lane.users[0].id}`]),
    headers: auth,
    intent: "admin without the admin token",
  });
};

// ---------------------------------------------------------------------------------------------------
// Everything else
// ---------------------------------------------------------------------------------------------------

const corsPreflight: Action = async (lane) => {
  const r = lane.rng;
  await lane.send({
    method: "OPTIONS",
    target: r.pick([
      "/v1/uploads",
      "/v1/tus",
      `/v1/files/${encodeSegment(lane.strangeId())}/content`,
      "/v1/admin/settings",
      "/nope",
    ]),
    headers: [
      ["Origin", r.pick(["https://app.example", "null", "http://127.0.0.1:3000"])],
      ["Access-Control-Request-Method", r.pick(["PUT", "PATCH", "DELETE", "FOO", "GET"])],
      ["Access-Control-Request-Headers", r.pick(["authorization, tus-resumable", "x-evil", ""])],
    ],
    intent: "CORS preflight",
  });
};

const junkPath: Action = async (lane) => {
  const r = lane.rng;
  const path = r.pick([
    "/",
    "/v1",
    "/v1/",
    "/v1/nope",
    "//v1/usage",
    "/v1/usage/",
    "/V1/USAGE",
    "/v1/./usage",
    "/v1/../v1/usage",
    "/%2e%2e/etc/passwd",
    "/v1/uploads/x/parts",
    "/v1/uploads/x/parts/1/2",
    "/v1/files/x/content/y",
    "/v1/links",
    "/v1/tus/a/b",
    "/v1/admin",
    "/v1/admin/users",
    `/v1/${"a".repeat(r.int(100, 7000))}`,
    "/v1/usage?%%",
    "/healthz?x=\u00e9",
    "/readyz/",
  ]);
  await lane.send(
    {
      method: r.pick(["GET", "POST", "DELETE"]),
      target: encodeURI(path).replace(/%25/g, "%"),
      headers: [lane.auth(0)],
      intent: "junk path",
    },
    0.3,
  );
};

/** A request broken below HTTP semantics: broken chunked bodies, short bodies, bad request lines. */
const wireJunk: Action = async (lane) => {
  const r = lane.rng;
  const base = r.pick<Spec>([
    {
      method: "POST",
      target: "/v1/uploads",
      headers: [lane.auth(0), JSON_TYPE],
      body: json({ filename: "w.txt", size: 3 }),
      intent: "create upload",
    },
    {
      method: "PATCH",
      target: `/v1/tus/${lane.liveUploads("tus")[0]?.id ?? crypto.randomUUID()}`,
      headers: [TUS, lane.auth(0), OFFSET_OCTETS, ["Upload-Offset", "0"]],
      body: { kind: "fixed", data: r.bytes(64) },
      intent: "tus PATCH",
    },
    {
      method: "PUT",
      target: `/v1/uploads/${lane.liveUploads("native")[0]?.id ?? crypto.randomUUID()}/parts/1`,
      headers: [lane.auth(0), OCTETS],
      body: { kind: "fixed", data: r.bytes(32) },
      intent: "part PUT",
    },
    { method: "GET", target: "/v1/usage", headers: [lane.auth(0)], intent: "usage" },
    {
      method: "PUT",
      target: "/v1/admin/settings",
      headers: [lane.admin(), JSON_TYPE, ["If-Match", "*"]],
      body: json({ nope: 1 }),
      intent: "admin settings PUT",
    },
  ]);
  const broken = lane.wireFlaw(base);
  await lane.send(broken, 0);
  // A broken PATCH may leave a tus lease behind or a part half-written: the upload's state is unknown now.
  for (const u of lane.uploads) if (base.target.includes(u.id)) u.tainted = true;
};

export const ACTIONS: (readonly [string, number, Action])[] = [
  ["native flow", 10, nativeFlow],
  ["big native flow", 0.25, bigNativeFlow],
  ["create upload", 6, createUpload],
  ["put part", 10, putSomePart],
  ["complete", 4, completeSome],
  ["abort", 3, abortSome],
  ["get upload", 3, getUpload],
  ["list uploads", 2, listUploads],
  ["tus flow", 8, tusFlow],
  ["big tus flow", 0.25, bigTusFlow],
  ["tus create", 5, tusCreateSome],
  ["tus patch", 8, tusPatchSome],
  ["tus head", 3, tusHead],
  ["tus delete", 2, tusDelete],
  ["tus options", 1, tusOptions],
  ["list files", 3, listFiles],
  ["file metadata", 3, getFile],
  ["download", 7, download],
  ["delete file", 2, deleteFile],
  ["create link", 3, createLink],
  ["link download", 5, linkDownload],
  ["audit", 2, auditLog],
  ["usage", 2, usage],
  ["health", 1, health],
  ["admin settings", 2, adminSettings],
  ["admin history", 1, adminHistory],
  ["admin rollback", 0.5, adminRollback],
  ["admin stats", 1, adminStats],
  ["admin audit", 1, adminAudit],
  ["admin users", 2, adminUsers],
  ["admin without token", 1, adminWithoutToken],
  ["cors preflight", 1, corsPreflight],
  ["junk path", 2, junkPath],
  ["wire junk", 2, wireJunk],
];

/** The lane's first steps: its users exist, and it knows the current settings. */
export async function warmUp(lane: Lane): Promise<void> {
  for (let i = 0; i < lane.users.length; i++) {
    await lane.send({ method: "GET", target: "/v1/usage", headers: [lane.auth(i)], intent: "usage" }, 0);
  }
  await readSettings(lane);
}
