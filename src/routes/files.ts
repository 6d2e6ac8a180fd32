import { Hono } from "hono";
import type { AppEnv } from "../app-env";

/** `/v1/files`: the caller's completed files. */
export const files = new Hono<AppEnv>();
