// Acting as each owner without the signing secret: the operator token mints a short-lived user token
// per owner through the admin API (audited there as user.token_issue, with the run id as the actor),
// and every upload then goes through the public API with that owner's quota, limits and audit trail.
import type { ApiClient, TokenSource } from "../api-client.ts";
import { mintUserToken } from "../server-api.ts";

const TTL_SECONDS = 900;
/** A token with less than this left is replaced before use, so no request starts on a dying token. */
const MARGIN_MS = 120_000;

interface Held {
  token: string;
  expiresAt: number;
}

/** Short-lived user tokens per owner, minted with the operator token and cached until near expiry. */
export class OwnerTokens {
  readonly #admin: ApiClient;
  readonly #actor: string;
  readonly #held = new Map<string, Promise<Held>>();

  /** `actor` is recorded with each issued token (X-Admin-Actor: 1-64 of `A-Za-z0-9._@+:-`). */
  constructor(admin: ApiClient, actor: string) {
    this.#admin = admin;
    this.#actor = actor.replace(/[^A-Za-z0-9._@+:-]/g, "_").slice(0, 64);
  }

  /** A token source for one owner: cached, renewed ahead of expiry, and on demand after a 401. */
  forOwner(userId: string): TokenSource {
    return {
      token: async () => {
        for (;;) {
          const held = this.#held.get(userId);
          if (!held) break;
          const current = await held.catch(() => null);
          if (current && current.expiresAt - Date.now() > MARGIN_MS) return current.token;
          // Stale or failed; unless another caller already replaced it meanwhile, replace it here.
          if (this.#held.get(userId) === held) break;
        }
        const next = this.#mint(userId);
        this.#held.set(userId, next);
        return (await next).token;
      },
      refresh: async () => {
        const held = this.#mint(userId);
        this.#held.set(userId, held);
        return (await held).token;
      },
    };
  }

  async #mint(userId: string): Promise<Held> {
    const minted = await mintUserToken(this.#admin, userId, TTL_SECONDS, this.#actor);
    return { token: minted.token, expiresAt: Date.parse(minted.expiresAt) };
  }
}
