// The command tree: global options, then one registration per command module.
import { readFileSync } from "node:fs";
import { Command } from "commander";
import { action } from "./commands/action.ts";
import { registerDownload } from "./commands/download.ts";
import { registerFileCommands } from "./commands/files.ts";
import { registerMigrate } from "./commands/migrate.ts";
import { registerUpload } from "./commands/upload.ts";
import { DEFAULT_URL } from "./config.ts";

const VERSION = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string })
  .version;

/** Builds the `durable-uploads` program. Errors of commander itself are thrown, not printed (main.ts). */
export function buildProgram(): Command {
  const program = new Command("durable-uploads")
    .description("Resumable uploads to a durable-uploads server, and an operator's migration tool")
    .version(VERSION)
    .option("--url <url>", `server URL (env DURABLE_UPLOADS_URL, default ${DEFAULT_URL})`)
    .option("--token <jwt>", "user token (env DURABLE_UPLOADS_TOKEN)")
    .option("--admin-token <token>", "operator token for `migrate` (env DURABLE_UPLOADS_ADMIN_TOKEN)")
    .option("--json", "print one JSON document on stdout and nothing else there")
    .option("--no-progress", "no progress display on stderr")
    .showHelpAfterError("(run with --help for usage)")
    .exitOverride()
    .configureOutput({
      // Commander's errors are reported by main.ts (as JSON with --json); its help goes to stdout.
      writeErr: () => undefined,
    });
  registerUpload(program, action);
  registerDownload(program, action);
  registerFileCommands(program, action);
  registerMigrate(program, action);
  // Subcommands inherit the overrides so a bad option anywhere is reported the same way.
  for (const command of program.commands) {
    command.exitOverride().configureOutput({ writeErr: () => undefined });
    for (const sub of command.commands) sub.exitOverride().configureOutput({ writeErr: () => undefined });
  }
  return program;
}
