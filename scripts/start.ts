// `npm start`: applies local D1 migrations, makes .dev.vars if missing, then runs `wrangler dev` on
// 127.0.0.1:8787. Extra arguments go to `wrangler dev` (`npm start -- --port 9000 --var NAME:value`).
import { spawn, spawnSync } from "node:child_process";
import { ensureDevVars } from "./dev-vars.ts";

const args = process.argv.slice(2);
const has = (flag: string) => args.some((a) => a === flag || a.startsWith(`${flag}=`));
const optionValue = (flag: string): string | undefined => {
  const i = args.findIndex((a) => a === flag || a.startsWith(`${flag}=`));
  if (i < 0) return undefined;
  return args[i].includes("=") ? args[i].split("=")[1] : args[i + 1];
};

const { created } = ensureDevVars();
if (created)
  console.log("Created .dev.vars with a random AUTH_SECRET, ADMIN_TOKEN and LINK_SIGNING_KEYS (kept out of git).");

// Local state lives where wrangler dev keeps it; a --persist-to passed through applies to both steps.
const persist = optionValue("--persist-to");
const migrate = spawnSync(
  "wrangler",
  ["d1", "migrations", "apply", "DB", "--local", ...(persist ? ["--persist-to", persist] : [])],
  { stdio: "inherit", env: { ...process.env, CI: "true" } },
);
if (migrate.status !== 0) {
  console.error("Applying the local D1 migrations failed; see above.");
  process.exit(migrate.status ?? 1);
}

const ip = optionValue("--ip") ?? "127.0.0.1";
const port = optionValue("--port") ?? "8787";
const devArgs = ["dev", ...(has("--ip") ? [] : ["--ip", ip]), ...(has("--port") ? [] : ["--port", port]), ...args];
const base = `http://${ip}:${port}`;
console.log(`
durable-uploads is starting on ${base}
  get a token:   TOKEN=$(npm run --silent token -- alice)
  first request: curl -s -H "Authorization: Bearer $TOKEN" ${base}/v1/usage
  readiness:     curl -s ${base}/readyz
`);
const child = spawn("wrangler", devArgs, { stdio: "inherit" });
for (const signal of ["SIGINT", "SIGTERM"] as const) process.on(signal, () => child.kill(signal));
child.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
