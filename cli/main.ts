#!/usr/bin/env node
// `durable-uploads`: the command-line client of a durable-uploads server (see docs/cli.md).
import "./quiet-warnings.ts";
import { CommanderError } from "commander";
import { report } from "./commands/action.ts";
import { CliError, EXIT, Output } from "./output.ts";
import { buildProgram } from "./program.ts";

const program = buildProgram();
try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // --help and --version end here too, successfully.
    if (err.exitCode === 0) process.exitCode = 0;
    else {
      const out = new Output({ json: process.argv.includes("--json"), progress: false });
      const message = `${err.message.replace(/^error: /, "")} (see --help)`;
      process.exitCode = report(
        out,
        new CliError(err.code.replace(/^commander\./, "usage."), message, { exitCode: EXIT.usage }),
      );
    }
  } else {
    process.exitCode = report(new Output({ json: process.argv.includes("--json"), progress: false }), err);
  }
}
