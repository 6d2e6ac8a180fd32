// Fails when a source line is longer than the formatter's width. Biome wraps code at 120 columns but
// leaves long strings and comments alone; this catches those. Prose (Markdown) and generated or lock
// files are exempt. Usage: `node scripts/check-line-length.ts` (part of `npm run lint`).
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";

const MAX = 120;
const CHECKED = /\.(ts|mts|js|mjs|cjs|sql|toml|jsonc?|sh)$|^\.ci\/run$/;
const EXEMPT = new Set(["worker-configuration.d.ts", "package-lock.json", "package.json"]);

const { stdout } = await promisify(execFile)("git", ["ls-files", "--cached", "--others", "--exclude-standard"], {
  maxBuffer: 16 * 1024 * 1024,
});
const files = stdout.split("\n").filter((f) => f && CHECKED.test(f) && !EXEMPT.has(f));
const long: string[] = [];
for (const file of files) {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch {
    continue; // deleted in the working tree
  }
  text.split("\n").forEach((line, i) => {
    const width = [...line].length;
    if (width > MAX) long.push(`${file}:${i + 1}: ${width} characters`);
  });
}
if (long.length > 0) {
  console.error(`${long.length} line(s) longer than ${MAX} characters:\n${long.join("\n")}`);
  process.exit(1);
}
console.log(`line length: ${files.length} files, every line ≤ ${MAX} characters`);
