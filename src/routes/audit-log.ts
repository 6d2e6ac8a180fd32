import { Hono } from "hono";
import type { AppEnv } from "../app-env";

/** `/v1/audit`: the caller's own audit events. */
export const auditLog = new Hono<AppEnv>();
