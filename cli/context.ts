// What every command gets: where to write, the resolved configuration, and the Ctrl-C signal.
import { ApiClient } from "./api-client.ts";
import type { Config } from "./config.ts";
import type { Output } from "./output.ts";
import { formatDuration } from "./units.ts";

export interface CommandContext {
  out: Output;
  config: Config;
  /** Fires on Ctrl-C / SIGTERM. */
  signal: AbortSignal;
}

/** A client for the configured server with `auth`; retries are announced on stderr. */
export function apiClient(ctx: CommandContext, auth: string | undefined, note?: (line: string) => void): ApiClient {
  return new ApiClient({
    baseUrl: ctx.config.url,
    auth,
    signal: ctx.signal,
    onRetry: ({ reason, delayMs }) =>
      (note ?? ((l) => ctx.out.info(l)))(`retrying in ${formatDuration(delayMs / 1000)}: ${reason}`),
  });
}
