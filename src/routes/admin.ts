import { Hono } from "hono";
import type { AppEnv } from "../app-env";

/** `/v1/admin`: operator controls, guarded by ADMIN_TOKEN. */
export const admin = new Hono<AppEnv>();
