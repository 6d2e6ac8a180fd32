// The small file commands: `ls`, `rm`, `usage`, `link`.
import type { Command } from "commander";
import { requireToken } from "../config.ts";
import { apiClient, type CommandContext } from "../context.ts";
import { CliError, EXIT, table } from "../output.ts";
import { createLink, deleteFile, type FileInfo, getUsage, listFiles } from "../server-api.ts";
import { formatBytes, parseDuration, parseWholeNumber } from "../units.ts";
import type { Action } from "./action.ts";

/** Adds the command(s) of this module to the program. */
export function registerFileCommands(program: Command, action: Action): void {
  program
    .command("ls")
    .description("list your files, newest first")
    .option("--prefix <text>", "only files whose name starts with this")
    .option("--limit <n>", "at most this many files")
    .action(action((ctx, options: { prefix?: string; limit?: string }) => ls(ctx, options)));

  program
    .command("rm")
    .description("delete files (their bytes go back to your quota)")
    .argument("<fileIds...>", "file ids")
    .action(action((ctx, ids: string[]) => rm(ctx, ids)));

  program
    .command("usage")
    .description("your storage usage and quota")
    .action(action((ctx) => usage(ctx)));

  program
    .command("link")
    .description("a presigned download URL that needs no token")
    .argument("<fileId>", "file id")
    .option("--expires-in <duration>", "lifetime: seconds, or 15m, 2h, 7d (at most 7 days)", "1h")
    .action(action((ctx, fileId: string, options: { expiresIn: string }) => link(ctx, fileId, options)));
}

async function ls(ctx: CommandContext, options: { prefix?: string; limit?: string }): Promise<number> {
  const api = apiClient(ctx, requireToken(ctx.config));
  const limit = options.limit === undefined ? Number.POSITIVE_INFINITY : parseWholeNumber(options.limit, 1, 1e9);
  if (limit === null)
    throw new CliError("invalid_option", "--limit must be a positive whole number", { exitCode: EXIT.usage });
  const files: FileInfo[] = [];
  const pageSize = Math.min(1000, Number.isFinite(limit) ? limit : 1000);
  for await (const file of listFiles(api, { prefix: options.prefix, pageSize })) {
    files.push(file);
    if (files.length >= limit) break;
  }
  const rows = files.map((f) => [
    f.id,
    formatBytes(f.size).padStart(10),
    f.createdAt.slice(0, 19).replace("T", " "),
    f.filename,
  ]);
  const human = files.length === 0 ? "" : table([["ID", "SIZE".padStart(10), "CREATED (UTC)", "NAME"], ...rows]);
  if (files.length === 0) ctx.out.info("no files");
  ctx.out.result({ files }, human);
  return EXIT.ok;
}

async function rm(ctx: CommandContext, ids: string[]): Promise<number> {
  const api = apiClient(ctx, requireToken(ctx.config));
  const removed: string[] = [];
  const notFound: string[] = [];
  for (const id of ids) {
    if (await deleteFile(api, id)) {
      removed.push(id);
      ctx.out.info(`removed ${id}`);
    } else {
      notFound.push(id);
      ctx.out.warn(`no such file: ${id}`);
    }
  }
  ctx.out.result({ removed, notFound }, "");
  return notFound.length === 0 ? EXIT.ok : EXIT.failed;
}

async function usage(ctx: CommandContext): Promise<number> {
  const api = apiClient(ctx, requireToken(ctx.config));
  const u = await getUsage(api);
  const free = Math.max(0, u.limitBytes - u.usedBytes - u.reservedBytes);
  const pct = u.limitBytes > 0 ? ((u.usedBytes + u.reservedBytes) / u.limitBytes) * 100 : 100;
  const human = [
    `used      ${formatBytes(u.usedBytes)} in ${u.fileCount} file(s)`,
    `reserved  ${formatBytes(u.reservedBytes)} by ${u.activeUploads} active upload(s)`,
    `quota     ${formatBytes(u.limitBytes)} (${pct.toFixed(1)}% taken, ${formatBytes(free)} free)`,
  ].join("\n");
  ctx.out.result(u, human);
  return EXIT.ok;
}

async function link(ctx: CommandContext, fileId: string, options: { expiresIn: string }): Promise<number> {
  const seconds = parseDuration(options.expiresIn);
  if (seconds === null || seconds < 1 || seconds > 604_800) {
    throw new CliError("invalid_option", "--expires-in must be 1 second to 7 days (e.g. 900, 15m, 2h, 7d)", {
      exitCode: EXIT.usage,
    });
  }
  const api = apiClient(ctx, requireToken(ctx.config));
  const created = await createLink(api, fileId, seconds);
  ctx.out.info(`valid until ${created.expiresAt}`);
  ctx.out.result(created, created.url);
  return EXIT.ok;
}
