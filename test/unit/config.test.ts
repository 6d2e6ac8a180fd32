// How the Worker reads its vars (wrangler.toml, `--var`): parsed once, malformed values refused loudly
// rather than defaulted. Pure: readConfig only reads the env it is given.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { readConfig } from "../../src/settings/config";

describe("vars", () => {
  const withVars = (vars: Record<string, string>) => ({ ...env, ...vars }) as Env;

  it("reads the rate-limit, concurrency and CORS vars", () => {
    const config = readConfig(
      withVars({
        RATE_LIMIT_REQUESTS_PER_SECOND: "5",
        RATE_LIMIT_BURST: "9",
        RATE_LIMIT_BYTES_PER_MINUTE: "1048576",
        MAX_ACTIVE_UPLOADS: "3",
        CORS_ORIGINS: " https://App.example , http://localhost:5173,https://app.example ",
      }),
    );
    expect(config).toMatchObject({
      requestsPerSecond: 5,
      burst: 9,
      bytesPerMinute: 1_048_576,
      maxActiveUploads: 3,
      corsOrigins: ["https://app.example", "http://localhost:5173"],
    });
    // The existing fields are untouched.
    expect(config.partSizeBytes).toBe(8_388_608);
  });

  it("refuses malformed vars loudly", () => {
    const cases: Record<string, string>[] = [
      { RATE_LIMIT_BURST: "0" },
      { RATE_LIMIT_REQUESTS_PER_SECOND: "1.5" },
      { MAX_ACTIVE_UPLOADS: "lots" },
      { CORS_ORIGINS: "https://app.example/" },
      { CORS_ORIGINS: "app.example" },
    ];
    for (const vars of cases) {
      expect(() => readConfig(withVars(vars)), JSON.stringify(vars)).toThrow(/Invalid configuration/);
    }
  });
});
