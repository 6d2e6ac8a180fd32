import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import { quietRuntime } from "./test/support/runtime-noise.ts";

// The D1 migrations, read once here and applied inside the Workers runtime by test/support/setup.ts, so
// the tests run against exactly the schema `wrangler d1 migrations apply` produces.
const migrations = await readD1Migrations("./migrations");

// wrangler.toml declares AUTH_SECRET, ADMIN_TOKEN and LINK_SIGNING_KEYS as required secrets. Wrangler
// reads secrets from .dev.vars, .env or the environment; a fresh clone has no .dev.vars, so the test
// secrets come from the environment of this process (a caller's own values win).
process.env.AUTH_SECRET ??= "test-auth-secret-0123456789abcdef";
process.env.ADMIN_TOKEN ??= "test-admin-token-0123456789abcdef";
// Download links have their own key set (docs/auth.md); a kid is part of every link the tests make.
process.env.LINK_SIGNING_KEYS ??= "test-l1:test-link-key-0123456789abcdef";

export default defineConfig({
  test: {
    // The Worker logs one JSON line per request; show output only for failing tests.
    silent: "passed-only",
    // The runtime's routine diagnostics are held back and printed only if the run fails.
    reporters: ["default", quietRuntime()],
    projects: [
      {
        // Tests that run inside workerd, against real local D1, R2 and Durable Objects, in one folder per
        // technique: pure functions (unit), the objects' methods and alarms (objects), the Worker's fetch (http).
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            // workerd's verbose mode prints the stack of every request stream a test cuts on purpose;
            // errors and console output still show.
            verbose: false,
            miniflare: { bindings: { TEST_MIGRATIONS: migrations } },
          }),
        ],
        test: {
          name: "worker",
          // Tests that stream several 8 MiB parts take 3-4 s alone; the margin keeps a busy machine green.
          testTimeout: 30_000,
          include: [
            "test/unit/**/*.test.ts",
            "test/objects/**/*.test.ts",
            "test/http/**/*.test.ts",
            "test/faults/**/*.test.ts",
          ],
          setupFiles: ["./test/support/setup.ts"],
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
