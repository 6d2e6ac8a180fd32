import type { WireResponse } from "./wire.ts";

/** wrangler dev's answer to a request that was in flight while the Worker reloaded (a source file changed). */
export function isReloadAnswer(res: WireResponse): boolean {
  if (res.status !== 503 || res.headers["x-request-id"] !== undefined) return false;
  return /restarted mid-request/.test(new TextDecoder().decode(res.body.subarray(0, 200)));
}
