import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";

/** Where `wrangler dev` reads local secrets from. Never committed (see .gitignore). */
export const DEV_VARS = ".dev.vars";

/** Parses a dotenv-style file: `NAME=value` lines, `#` comments, optional surrounding quotes. */
export function parseDevVars(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq <= 0) continue;
    const value = line
      .slice(eq + 1)
      .trim()
      .replace(/^(["'])(.*)\1$/, "$2");
    vars[line.slice(0, eq).trim()] = value;
  }
  return vars;
}

/**
 * Creates `.dev.vars` with fresh random secrets when it does not exist, and returns its values.
 * Returns `created: true` the first time so the caller can say so.
 */
export function ensureDevVars(): { vars: Record<string, string>; created: boolean } {
  if (existsSync(DEV_VARS)) return { vars: parseDevVars(readFileSync(DEV_VARS, "utf8")), created: false };
  const vars = {
    AUTH_SECRET: randomBytes(32).toString("base64url"),
    ADMIN_TOKEN: randomBytes(32).toString("base64url"),
  };
  const text =
    "# Local secrets for `wrangler dev`, made by `npm start`. Never commit this file.\n" +
    Object.entries(vars)
      .map(([k, v]) => `${k}=${v}`)
      .join("\n") +
    "\n";
  writeFileSync(DEV_VARS, text, { mode: 0o600 });
  return { vars, created: true };
}
