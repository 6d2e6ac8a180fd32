// Every error code the API can answer with (src/core/error-codes.ts) must be documented: each appears,
// in backticks, somewhere under docs/. Part of `npm run lint`, so a new code cannot ship undocumented.
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { ERROR_CODES } from "../src/core/error-codes.ts";

async function markdown(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await markdown(path)));
    else if (entry.name.endsWith(".md")) out.push(path);
  }
  return out;
}

const docs = (await Promise.all((await markdown("docs")).map((f) => readFile(f, "utf8")))).join("\n");
const missing = Object.keys(ERROR_CODES).filter((code) => !docs.includes(`\`${code}\``));
if (missing.length > 0) {
  console.error(`${missing.length} error code(s) not documented under docs/ (write each as \`code\`):`);
  console.error(missing.join("\n"));
  process.exit(1);
}
console.log(`error codes: all ${Object.keys(ERROR_CODES).length} documented under docs/`);
