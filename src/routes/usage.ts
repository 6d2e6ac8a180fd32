import { Hono } from "hono";
import type { AppEnv } from "../app-env";
import { requireUser } from "../auth";
import { accountPolicy } from "../policy";
import { accountFor } from "../stubs";

/** `GET /v1/usage`: the caller's ledger, straight from their account object (authoritative, not D1). */
export const usage = new Hono<AppEnv>().use(requireUser).get("/", async (c) => {
  const userId = c.get("userId");
  return c.json(await accountFor(c.env, userId).usage(userId, await accountPolicy(c.env)));
});
