import { randomBytes } from "node:crypto";
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";

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

/** The secrets `.dev.vars` holds, each made fresh and random. */
const SECRETS: Record<string, () => string> = {
  AUTH_SECRET: () => randomBytes(32).toString("base64url"),
  ADMIN_TOKEN: () => randomBytes(32).toString("base64url"),
  // Download links have their own key set (docs/auth.md): `kid:secret`, the first entry signs.
  LINK_SIGNING_KEYS: () => `l${Math.floor(Date.now() / 1000)}:${randomBytes(32).toString("base64url")}`,
};

/**
 * Creates `.dev.vars` with fresh random secrets when it does not exist, and returns its values. An
 * existing file missing a secret added since (LINK_SIGNING_KEYS) gets it appended; nothing in it changes.
 * Returns `created: true` the first time so the caller can say so.
 */
export function ensureDevVars(): { vars: Record<string, string>; created: boolean } {
  if (existsSync(DEV_VARS)) {
    const vars = parseDevVars(readFileSync(DEV_VARS, "utf8"));
    const missing = Object.keys(SECRETS).filter((name) => !(name in vars));
    if (missing.length > 0) {
      for (const name of missing) vars[name] = SECRETS[name]();
      appendFileSync(DEV_VARS, `\n${missing.map((name) => `${name}=${vars[name]}`).join("\n")}\n`);
    }
    return { vars, created: false };
  }
  const vars = Object.fromEntries(Object.entries(SECRETS).map(([name, make]) => [name, make()]));
  const text =
    "# Local secrets for `wrangler dev`, made by `npm start`. Never commit this file.\n" +
    Object.entries(vars)
      .map(([k, v]) => `${k}=${v}`)
      .join("\n") +
    "\n";
  writeFileSync(DEV_VARS, text, { mode: 0o600 });
  return { vars, created: true };
}
