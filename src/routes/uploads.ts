import { Hono } from "hono";
import type { AppEnv } from "../app-env";

/** `/v1/uploads`: resumable multipart uploads. */
export const uploads = new Hono<AppEnv>();
