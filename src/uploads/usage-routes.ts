import { Hono } from "hono";
import { accountFor } from "../../objects/stubs";
import { requireUser } from "../auth/user-auth";
import type { AppEnv } from "../http/app-env";
import { accountPolicy } from "../settings/policy";

/** `GET /v1/usage`: the caller's ledger, straight from their account object (authoritative, not D1). */
export const usage = new Hono<AppEnv>().use(requireUser).get("/", async (c) => {
  const userId = c.get("userId");
  return c.json(await accountFor(c.env, userId).usage(userId, await accountPolicy(c.env)));
});
