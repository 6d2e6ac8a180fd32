import { Hono } from "hono";
import type { AppEnv } from "../app-env";

/** `/v1/links`: downloads through presigned links, no Authorization header. */
export const links = new Hono<AppEnv>();
