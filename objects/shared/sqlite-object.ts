import { DurableObject } from "cloudflare:workers";
import { Outbox } from "./outbox";
import { migrateSchema } from "./schema";

/**
 * What both of the service's Durable Objects share: SQLite storage brought to the current schema in the
 * constructor (before any request or alarm runs), a durable outbox in that storage (its topics and
 * their payload types given by `Topics`), and a readiness probe.
 */
export abstract class SqliteObject<Topics extends Record<string, unknown>> extends DurableObject<Env> {
  protected readonly sql: SqlStorage;
  protected readonly outbox: Outbox<Topics>;

  constructor(ctx: DurableObjectState, env: Env, schema: readonly string[]) {
    super(ctx, env);
    this.sql = ctx.storage.sql;
    migrateSchema(ctx.storage, schema);
    this.outbox = new Outbox<Topics>(this.sql);
  }

  /** Readiness probe: proves the namespace routes to a live object with working storage. */
  async ping(): Promise<"pong"> {
    this.sql.exec("SELECT 1");
    return "pong";
  }
}
