// What a migration imports: a directory whose first path segment names the owner
// (`<dir>/<userId>/<any/path/name.ext>`), or a manifest (CSV with the header
// `path,userId,filename,contentType`, or JSONL objects with the same keys). Every entry is stat'ed
// here; problems (no owner, bad owner id, unreadable, duplicate, bad media type) stay on the entry so
// the assessment and the report can name them, line by line.
import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { access, opendir, readFile, stat } from "node:fs/promises";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { parse as parseCsv } from "csv-parse/sync";
import { contentTypeFor, MEDIA_TYPE } from "../content-type.ts";
import { CliError, EXIT } from "../output.ts";

export type SourceKind = "directory" | "csv" | "jsonl";

export const USER_ID = /^[A-Za-z0-9._-]{1,128}$/;

export type ProblemCode =
  | "no_owner"
  | "invalid_owner"
  | "invalid_row"
  | "invalid_content_type"
  | "unreadable"
  | "not_a_file"
  | "duplicate";

export interface SourceEntry {
  /** Stable id from owner and absolute path: the journal's key, and stored in the file's metadata. */
  entryId: string;
  /** Position in the source (directory order is sorted, so it is stable too). */
  seq: number;
  userId: string;
  /** Absolute path of the local file. */
  path: string;
  /** The path as the source names it: below the owner's folder, or as written in the manifest. */
  sourcePath: string;
  filename: string;
  contentType: string;
  /** Where the entry came from, for messages: `line 12` or the path below the source directory. */
  location: string;
  size: number | null;
  mtimeMs: number | null;
  problem: { code: ProblemCode; message: string } | null;
}

export interface Source {
  kind: SourceKind;
  /** Absolute path of the directory or manifest. */
  root: string;
  entries: SourceEntry[];
}

/** The journal key of a file for an owner. */
export function entryIdOf(userId: string, path: string): string {
  return createHash("sha256").update(`${userId}\0${path}`).digest("hex").slice(0, 32);
}

interface RawEntry {
  userId: string;
  path: string;
  sourcePath: string;
  filename?: string;
  contentType?: string;
  location: string;
  problem?: { code: ProblemCode; message: string };
}

/** Reads and stats a source; a source that cannot be read at all is a CliError. */
export async function readSource(source: string): Promise<Source> {
  const root = resolve(source);
  const info = await stat(root).catch(() => null);
  if (!info)
    throw new CliError("source_not_found", `no such directory or manifest: ${source}`, { exitCode: EXIT.usage });
  let kind: SourceKind;
  let raw: RawEntry[];
  if (info.isDirectory()) {
    kind = "directory";
    raw = await walkDirectory(root);
  } else if (/\.csv$/i.test(root)) {
    kind = "csv";
    raw = parseCsvManifest(root, await readFile(root, "utf8"));
  } else if (/\.(jsonl|ndjson)$/i.test(root)) {
    kind = "jsonl";
    raw = parseJsonlManifest(root, await readFile(root, "utf8"));
  } else {
    throw new CliError("unknown_source", `a source is a directory, a .csv or a .jsonl manifest: ${source}`, {
      exitCode: EXIT.usage,
    });
  }
  return { kind, root, entries: await finish(raw) };
}

/** `<root>/<userId>/<any/path>`: every regular file below an owner's folder, in sorted order. */
async function walkDirectory(root: string): Promise<RawEntry[]> {
  const entries: RawEntry[] = [];
  const visit = async (dir: string, owner: string | null): Promise<void> => {
    let names: { name: string; isDir: boolean; isFile: boolean; isLink: boolean }[];
    try {
      const handle = await opendir(dir);
      names = [];
      for await (const d of handle) {
        names.push({ name: d.name, isDir: d.isDirectory(), isFile: d.isFile(), isLink: d.isSymbolicLink() });
      }
    } catch (err) {
      const rel = relative(root, dir);
      entries.push({
        userId: owner ?? "",
        path: dir,
        sourcePath: rel,
        location: rel,
        problem: { code: "unreadable", message: `cannot read folder: ${(err as Error).message}` },
      });
      return;
    }
    names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const d of names) {
      const path = join(dir, d.name);
      const rel = relative(root, path);
      if (owner === null) {
        if (d.isDir) await visit(path, d.name);
        else {
          entries.push({
            userId: "",
            path,
            sourcePath: rel,
            location: rel,
            problem: { code: "no_owner", message: "files must sit in a folder named after their owner" },
          });
        }
        continue;
      }
      const below = relative(join(root, owner), path).split(sep).join("/");
      if (d.isDir) await visit(path, owner);
      // Symbolic links to files are followed when stat'ed; a link to a folder is not walked (loops).
      else if (d.isFile || d.isLink) entries.push({ userId: owner, path, sourcePath: below, location: rel });
      else
        entries.push({
          userId: owner,
          path,
          sourcePath: below,
          location: rel,
          problem: { code: "not_a_file", message: "not a regular file" },
        });
    }
  };
  await visit(root, null);
  return entries;
}

interface ManifestRow {
  path?: unknown;
  userId?: unknown;
  filename?: unknown;
  contentType?: unknown;
}

/** One manifest row to an entry; paths are relative to the manifest's folder. */
function rowEntry(manifest: string, row: ManifestRow, location: string): RawEntry {
  const given = typeof row.path === "string" ? row.path : "";
  const userId = typeof row.userId === "string" ? row.userId : "";
  const entry: RawEntry = {
    userId,
    path: given ? resolve(dirname(manifest), given) : "",
    sourcePath: given,
    filename: typeof row.filename === "string" && row.filename !== "" ? row.filename : undefined,
    contentType: typeof row.contentType === "string" && row.contentType !== "" ? row.contentType : undefined,
    location,
  };
  if (!given) entry.problem = { code: "invalid_row", message: "path is missing" };
  else if (!userId) entry.problem = { code: "invalid_row", message: "userId is missing" };
  return entry;
}

function parseCsvManifest(manifest: string, text: string): RawEntry[] {
  let rows: { record: Record<string, string>; info: { lines: number; error?: { message?: string } } }[];
  try {
    rows = parseCsv(text, { columns: true, info: true, bom: true, skip_empty_lines: true, relax_column_count: true });
  } catch (err) {
    throw new CliError("invalid_manifest", `${manifest}: ${(err as Error).message}`, { exitCode: EXIT.usage });
  }
  const header = text
    .replace(/^\uFEFF/, "")
    .split(/\r?\n/, 1)[0]
    .split(",")
    .map((h) => h.trim());
  for (const column of ["path", "userId"]) {
    if (!header.includes(column)) {
      throw new CliError("invalid_manifest", `${manifest}: the header must name path,userId,filename,contentType`, {
        exitCode: EXIT.usage,
      });
    }
  }
  return rows.map(({ record, info }) => {
    const entry = rowEntry(manifest, record, `line ${info.lines}`);
    if (info.error && !entry.problem) entry.problem = { code: "invalid_row", message: "wrong number of columns" };
    return entry;
  });
}

function parseJsonlManifest(manifest: string, text: string): RawEntry[] {
  const entries: RawEntry[] = [];
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  lines.forEach((line, i) => {
    if (line.trim() === "") return;
    const location = `line ${i + 1}`;
    let row: unknown;
    try {
      row = JSON.parse(line);
    } catch {
      entries.push({
        userId: "",
        path: "",
        sourcePath: "",
        location,
        problem: { code: "invalid_row", message: "not JSON" },
      });
      return;
    }
    if (typeof row !== "object" || row === null || Array.isArray(row)) {
      entries.push({
        userId: "",
        path: "",
        sourcePath: "",
        location,
        problem: { code: "invalid_row", message: "not a JSON object" },
      });
      return;
    }
    entries.push(rowEntry(manifest, row as ManifestRow, location));
  });
  return entries;
}

/** Checks names and types, marks duplicates, and stats every file (a few at a time). */
async function finish(raw: RawEntry[]): Promise<SourceEntry[]> {
  const seen = new Map<string, string>();
  const entries: SourceEntry[] = raw.map((r, seq) => {
    const filename = r.filename ?? basename(r.path || r.sourcePath || "file");
    const contentType = r.contentType ?? contentTypeFor(filename);
    let problem = r.problem ?? null;
    if (!problem && !USER_ID.test(r.userId)) {
      problem = { code: "invalid_owner", message: `owner "${r.userId}" is not 1-128 characters of A-Z a-z 0-9 . _ -` };
    }
    if (!problem && !MEDIA_TYPE.test(contentType)) {
      problem = { code: "invalid_content_type", message: `"${contentType}" is not a media type` };
    }
    if (!problem && Array.from(filename).length > 1024) {
      problem = { code: "invalid_row", message: "filename is longer than 1024 characters" };
    }
    const entryId = entryIdOf(r.userId, r.path);
    if (!problem && r.path) {
      const first = seen.get(entryId);
      if (first) problem = { code: "duplicate", message: `the same file for the same owner as ${first}` };
      else seen.set(entryId, r.location);
    }
    return {
      entryId: problem?.code === "duplicate" ? `${entryId}-dup${seq}` : entryId,
      seq,
      userId: r.userId,
      path: r.path,
      sourcePath: r.sourcePath,
      filename,
      contentType,
      location: r.location,
      size: null,
      mtimeMs: null,
      problem,
    };
  });
  const queue = entries.filter((e) => !e.problem && e.path);
  const worker = async () => {
    for (let e = queue.shift(); e; e = queue.shift()) await statEntry(e);
  };
  await Promise.all(Array.from({ length: 16 }, worker));
  return entries;
}

async function statEntry(entry: SourceEntry): Promise<void> {
  try {
    const info = await stat(entry.path);
    if (!info.isFile()) {
      entry.problem = { code: "not_a_file", message: "not a regular file" };
      return;
    }
    await access(entry.path, constants.R_OK);
    entry.size = info.size;
    entry.mtimeMs = info.mtimeMs;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    entry.problem = {
      code: "unreadable",
      message: code === "ENOENT" ? "no such file" : `cannot read: ${code ?? (err as Error).message}`,
    };
  }
}
