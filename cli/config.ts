// Where the CLI finds its server and credentials: a flag beats the environment, which beats the default.
import { CliError, EXIT } from "./output.ts";

export const DEFAULT_URL = "http://127.0.0.1:8787";

export interface GlobalOptions {
  url?: string;
  token?: string;
  adminToken?: string;
  json?: boolean;
  progress?: boolean;
}

export interface Config {
  url: string;
  token: string | undefined;
  adminToken: string | undefined;
}

/** Resolves `--url/--token/--admin-token` against `DURABLE_UPLOADS_*` and checks the URL. */
export function resolveConfig(options: GlobalOptions, env: NodeJS.ProcessEnv = process.env): Config {
  const raw = options.url ?? env.DURABLE_UPLOADS_URL ?? DEFAULT_URL;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new CliError("invalid_url", `not a URL: ${raw}`, { exitCode: EXIT.usage });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new CliError("invalid_url", `the server URL must be http(s): ${raw}`, { exitCode: EXIT.usage });
  }
  return {
    // The API lives under the origin (plus any path prefix a proxy adds); no trailing slash.
    url: url.href.replace(/\/+$/, ""),
    token: nonEmpty(options.token ?? env.DURABLE_UPLOADS_TOKEN),
    adminToken: nonEmpty(options.adminToken ?? env.DURABLE_UPLOADS_ADMIN_TOKEN),
  };
}

function nonEmpty(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed ? trimmed : undefined;
}

/** The user token, or a clear error saying how to give one. */
export function requireToken(config: Config): string {
  if (!config.token) {
    throw new CliError("missing_token", "no user token: pass --token or set DURABLE_UPLOADS_TOKEN", {
      exitCode: EXIT.usage,
    });
  }
  return config.token;
}

/** The operator token, or a clear error saying how to give one. */
export function requireAdminToken(config: Config): string {
  if (!config.adminToken) {
    throw new CliError(
      "missing_admin_token",
      "no operator token: pass --admin-token or set DURABLE_UPLOADS_ADMIN_TOKEN",
      { exitCode: EXIT.usage },
    );
  }
  return config.adminToken;
}

/**
 * The `sub` claim of a JWT, read without verifying it (the server verifies): used only to keep one
 * user's local resume state apart from another's.
 */
export function tokenSubject(token: string): string | undefined {
  const payload = token.split(".")[1];
  if (!payload) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { sub?: unknown };
    return typeof claims.sub === "string" ? claims.sub : undefined;
  } catch {
    return undefined;
  }
}
