import { applyD1Migrations, env } from "cloudflare:test";

// Storage is isolated per test file; migrations are idempotent (tracked in d1_migrations), so applying
// them in every file's setup is cheap and leaves each file a fully migrated database.
await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);
