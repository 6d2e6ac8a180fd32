// "Intact ledgers", after the run, for every user the fuzzer used:
//
//   - `GET /v1/usage` (the account object) usedBytes / fileCount equal the sum / count of the user's live
//     files as D1 lists them (`GET /v1/files`, every page);
//   - reservedBytes / activeUploads equal the sum / count of the uploads still holding a reservation
//     (`GET /v1/uploads`, every page), and each of those sessions (`GET /v1/uploads/:id`) is active or
//     completing, and every upload the fuzzer saw created that is active or completing is listed;
//   - every file the fuzzer saw completed and never tried to delete is listed; none it deleted is;
//   - `GET /v1/admin/users/:userId` shows the same usage and reservations;
//   - used + reserved ≤ limit;
//   - when the fuzzer owns the server: the D1 index converges to the same totals (`GET /v1/admin/stats`:
//     bytesStored, filesStored, bytesReserved, uploads active + completing).
//
// D1 is a checkpoint that trails the objects by an outbox delivery, so the whole check is repeated until it
// holds or the time is up.
import type { FileRef, UploadRef } from "./lane.ts";
import { parseJson } from "./lane.ts";
import { type Origin, send, type WireResponse } from "./wire.ts";

export interface LedgerUser {
  userId: string;
  token: string;
  /** Uploads and files the fuzzer saw this user make. */
  uploads: UploadRef[];
  files: FileRef[];
}

export interface LedgerCheck {
  name: string;
  pass: boolean;
  detail: string;
}

export interface LedgerUserReport {
  userId: string;
  usage: Record<string, number> | null;
  checks: LedgerCheck[];
}

export interface LedgerReport {
  pass: boolean;
  users: LedgerUserReport[];
  totals: LedgerCheck[];
  /** Milliseconds until every check held (or the time ran out). */
  ms: number;
  attempts: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Api {
  get(path: string, token: string): Promise<Record<string, unknown>>;
}

/** GET with retries on 429 (the ledger check is rate limited like everything else) and on lost answers. */
function api(origin: Origin, timeoutMs: number): Api {
  return {
    async get(path, token) {
      let last: WireResponse | null = null;
      for (let attempt = 0; attempt < 20; attempt++) {
        last = await send(
          origin,
          { method: "GET", target: path, headers: [["Authorization", `Bearer ${token}`]] },
          timeoutMs,
        );
        if (last.status === 200) {
          const j = parseJson(last);
          if (j) return j;
        }
        if (last.status !== 429 && last.status !== 0 && last.status < 500) break;
        await sleep(Math.min(2000, 1000 * Number(last.headers["retry-after"] ?? 0.2)));
      }
      throw new Error(`GET ${path} → ${last?.status} ${new TextDecoder().decode(last?.body.subarray(0, 200))}`);
    },
  };
}

async function pages<T>(client: Api, path: string, key: string, token: string): Promise<T[]> {
  const out: T[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 200; page++) {
    const sep = path.includes("?") ? "&" : "?";
    const j = await client.get(
      `${path}${sep}limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`,
      token,
    );
    out.push(...((j[key] as T[]) ?? []));
    cursor = typeof j.nextCursor === "string" ? j.nextCursor : null;
    if (!cursor) break;
  }
  return out;
}

const check = (name: string, pass: boolean, detail: string): LedgerCheck => ({ name, pass, detail });

async function checkUser(client: Api, user: LedgerUser, adminToken: string): Promise<LedgerUserReport> {
  const checks: LedgerCheck[] = [];
  const usage = (await client.get("/v1/usage", user.token)) as Record<string, number>;
  const files = await pages<{ id: string; size: number }>(client, "/v1/files", "files", user.token);
  const active = await pages<{ uploadId: string; size: number }>(client, "/v1/uploads", "uploads", user.token);

  const fileBytes = files.reduce((n, f) => n + f.size, 0);
  checks.push(
    check(
      "usedBytes = Σ live files (D1)",
      usage.usedBytes === fileBytes && usage.fileCount === files.length,
      `usage ${usage.usedBytes} B in ${usage.fileCount} files; GET /v1/files ${fileBytes} B in ${files.length}`,
    ),
  );
  const reserved = active.reduce((n, u) => n + u.size, 0);
  checks.push(
    check(
      "reservedBytes = Σ active uploads",
      usage.reservedBytes === reserved && usage.activeUploads === active.length,
      `usage ${usage.reservedBytes} B in ${usage.activeUploads} uploads; ` +
        `GET /v1/uploads ${reserved} B in ${active.length}`,
    ),
  );
  checks.push(
    check(
      "used + reserved ≤ limit",
      usage.usedBytes + usage.reservedBytes <= usage.limitBytes,
      `${usage.usedBytes} + ${usage.reservedBytes} ≤ ${usage.limitBytes}`,
    ),
  );

  // The sessions agree with the account: each listed reservation is an active (or completing) session,
  // and each upload the fuzzer made whose session is still active holds a reservation.
  const listed = new Map(active.map((u) => [u.uploadId, u.size]));
  const toAsk = new Set([...listed.keys(), ...user.uploads.filter((u) => !u.gone).map((u) => u.id)]);
  const disagreements: string[] = [];
  for (const id of toAsk) {
    let status = "unknown";
    let size: number | null = null;
    try {
      const view = await client.get(`/v1/uploads/${id}`, user.token);
      status = String(view.status);
      size = typeof view.size === "number" ? view.size : null;
    } catch (err) {
      status = `error: ${(err as Error).message.slice(0, 80)}`;
    }
    const holds = status === "active" || status === "completing";
    if (listed.has(id) !== holds) {
      disagreements.push(`${id}: session ${status}, ${listed.has(id) ? "listed" : "not listed"} as reserved`);
    } else if (holds && size !== null && size > 0 && listed.get(id) !== size) {
      disagreements.push(`${id}: session size ${size}, reservation ${listed.get(id)}`);
    }
  }
  checks.push(
    check(
      "reservations = active sessions",
      disagreements.length === 0,
      disagreements.length === 0 ? `${toAsk.size} uploads agree` : disagreements.slice(0, 5).join("; "),
    ),
  );

  const listedFiles = new Set(files.map((f) => f.id));
  const missing = user.files.filter((f) => !f.gone && !f.deleteTried && !listedFiles.has(f.id)).map((f) => f.id);
  const zombies = user.files.filter((f) => f.gone && listedFiles.has(f.id)).map((f) => f.id);
  checks.push(
    check(
      "completed files listed, deleted ones not",
      missing.length === 0 && zombies.length === 0,
      `${user.files.length} known files; missing ${missing.length}` +
        `${missing.length ? ` (${missing.slice(0, 3).join(", ")})` : ""}` +
        `; deleted but listed ${zombies.length}${zombies.length ? ` (${zombies.slice(0, 3).join(", ")})` : ""}`,
    ),
  );

  const admin = await client.get(`/v1/admin/users/${user.userId}`, adminToken);
  const adminUsage = admin.usage as Record<string, number> | undefined;
  const adminActive = ((admin.activeUploads as { uploadId: string }[] | undefined) ?? []).map((u) => u.uploadId);
  const sameUsage =
    !!adminUsage &&
    ["usedBytes", "reservedBytes", "fileCount", "activeUploads"].every((k) => adminUsage[k] === usage[k]);
  const sameActive = adminActive.every((id) => listed.has(id)) && adminActive.length === Math.min(100, listed.size);
  checks.push(
    check(
      "admin view = usage",
      sameUsage && sameActive,
      `admin usage ${JSON.stringify(adminUsage)}; ${adminActive.length} active uploads listed`,
    ),
  );
  return { userId: user.userId, usage, checks };
}

async function checkTotals(client: Api, adminToken: string, users: LedgerUserReport[]): Promise<LedgerCheck[]> {
  const stats = await client.get("/v1/admin/stats", adminToken);
  const sum = (k: string) => users.reduce((n, u) => n + (u.usage?.[k] ?? 0), 0);
  const byStatus = (stats.uploadsByStatus as Record<string, number> | undefined) ?? {};
  const activeSessions = (byStatus.active ?? 0) + (byStatus.completing ?? 0);
  return [
    check(
      "D1 bytesStored / filesStored = Σ usage",
      stats.bytesStored === sum("usedBytes") && stats.filesStored === sum("fileCount"),
      `D1 ${stats.bytesStored} B in ${stats.filesStored} files; accounts ${sum("usedBytes")} B in ${sum("fileCount")}`,
    ),
    check(
      "D1 bytesReserved = Σ reservedBytes",
      stats.bytesReserved === sum("reservedBytes"),
      `D1 ${stats.bytesReserved} B; accounts ${sum("reservedBytes")} B`,
    ),
    check(
      "D1 active uploads = Σ activeUploads",
      activeSessions === sum("activeUploads"),
      `D1 multipart_uploads active+completing ${activeSessions}; accounts ${sum("activeUploads")}`,
    ),
  ];
}

export async function checkLedgers(opts: {
  origin: Origin;
  adminToken: string;
  users: LedgerUser[];
  /** The fuzzer's users are the only users on the server: D1's service-wide totals must match theirs. */
  exclusive: boolean;
  timeoutMs: number;
  requestTimeoutMs: number;
}): Promise<LedgerReport> {
  const client = api(opts.origin, opts.requestTimeoutMs);
  const started = Date.now();
  let attempts = 0;
  for (;;) {
    attempts++;
    const users: LedgerUserReport[] = [];
    // Users one after another would take long (every call is rate limited per user): a few at a time.
    for (let i = 0; i < opts.users.length; i += 4) {
      const batch = opts.users.slice(i, i + 4);
      users.push(
        ...(await Promise.all(
          batch.map((u) =>
            checkUser(client, u, opts.adminToken).catch(
              (err): LedgerUserReport => ({
                userId: u.userId,
                usage: null,
                checks: [check("reachable", false, (err as Error).message)],
              }),
            ),
          ),
        )),
      );
    }
    const totals = opts.exclusive
      ? await checkTotals(client, opts.adminToken, users).catch((err) => [
          check("D1 totals", false, (err as Error).message),
        ])
      : [];
    const pass = users.every((u) => u.checks.every((c) => c.pass)) && totals.every((c) => c.pass);
    if (pass || Date.now() - started > opts.timeoutMs) {
      return { pass, users, totals, ms: Date.now() - started, attempts };
    }
    await sleep(2000);
  }
}
