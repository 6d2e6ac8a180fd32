import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

// The D1 migrations, read once here and applied inside the Workers runtime by test/worker/setup.ts, so
// the tests run against exactly the schema `wrangler d1 migrations apply` produces.
const migrations = await readD1Migrations("./migrations");

export default defineConfig({
  test: {
    // The Worker logs one JSON line per request; show output only for failing tests.
    silent: "passed-only",
    projects: [
      {
        // Tests that run inside workerd, against real local D1, R2 and Durable Objects.
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              bindings: {
                AUTH_SECRET: "test-auth-secret-0123456789abcdef",
                ADMIN_TOKEN: "test-admin-token-0123456789abcdef",
                TEST_MIGRATIONS: migrations,
              },
            },
          }),
        ],
        test: {
          name: "worker",
          include: ["test/worker/**/*.test.ts"],
          setupFiles: ["./test/worker/setup.ts"],
        },
      },
      {
        // End-to-end tests: Node starts a real `wrangler dev` and talks HTTP to it.
        test: {
          name: "e2e",
          environment: "node",
          include: ["test/e2e/**/*.test.ts"],
          testTimeout: 180_000,
          hookTimeout: 120_000,
          // Each file starts its own wrangler dev that moves hundreds of MiB; one at a time, so two servers
          // never compete for the 2 cores of the CI machine (under that load workerd dropped connections).
          maxWorkers: 1,
          fileParallelism: false,
        },
      },
    ],
  },
});
