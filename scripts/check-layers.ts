// Enforces the direction of dependencies (docs/architecture.md): routes/http → feature modules →
// objects (through their stubs and contracts) → core. Reads every import of every source file, type-only
// ones included, and fails listing each import that points the wrong way. Part of `npm run lint`.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { dirname, join, normalize } from "node:path";
import { promisify } from "node:util";

interface Rule {
  /** Files the rule applies to. */
  from: RegExp;
  /** Why, printed with each violation. */
  why: string;
  /** Whether importing `target` (a repo path, or a package name) is allowed from such a file. */
  allows(target: string): boolean;
}

const RULES: Rule[] = [
  {
    from: /^src\/core\//,
    why: "core is the bottom layer: it imports only core (no framework, no packages)",
    allows: (t) => t.startsWith("src/core/"),
  },
  {
    from: /^objects\//,
    why: "Durable Objects import only core and objects (never the web framework or the Worker's features)",
    allows: (t) => t.startsWith("src/core/") || t.startsWith("objects/") || t === "cloudflare:workers",
  },
  {
    // The entry point alone exports the object classes, because the runtime finds them there.
    from: /^src\/(?!index\.ts$)/,
    why: "the Worker reaches the objects only through objects/stubs.ts and each object's contract.ts",
    allows: (t) => !t.startsWith("objects/") || t === "objects/stubs.ts" || /^objects\/[^/]+\/contract\.ts$/.test(t),
  },
  {
    from: /^(src|objects|test|scripts|bench|cli)\//,
    why: "nothing imports the Worker's entry point (src/index.ts); import the module that defines the thing",
    allows: (t) => t !== "src/index.ts",
  },
];

const IMPORT = /(?:^|[\n;])\s*(?:import|export)\s[^"';]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

async function resolve(file: string, spec: string): Promise<string> {
  if (!spec.startsWith(".")) return spec;
  const base = normalize(join(dirname(file), spec));
  for (const candidate of [base, `${base}.ts`, `${base}/index.ts`]) {
    try {
      await readFile(candidate);
      return candidate;
    } catch {
      // try the next form
    }
  }
  return base;
}

/** The violations in the given files (repo-relative paths), as printable lines. */
export async function violations(files: string[]): Promise<string[]> {
  const found: string[] = [];
  for (const file of files) {
    const text = await readFile(file, "utf8");
    for (const match of text.matchAll(IMPORT)) {
      const spec = match[1] ?? match[2];
      const target = await resolve(file, spec);
      for (const rule of RULES) {
        if (rule.from.test(file) && !rule.allows(target)) {
          found.push(`${file}: imports ${spec} — ${rule.why}`);
        }
      }
    }
  }
  return found;
}

const { stdout } = await promisify(execFile)("git", ["ls-files", "--cached", "--others", "--exclude-standard"]);
const sources = stdout.split("\n").filter((f) => /^(src|objects|test|scripts|bench|cli)\/.*\.ts$/.test(f));
const present: string[] = [];
for (const f of sources) {
  try {
    await readFile(f);
    present.push(f);
  } catch {
    // deleted in the working tree
  }
}
const bad = await violations(present);
if (bad.length > 0) {
  console.error(`${bad.length} import(s) against the layering (docs/architecture.md):\n${bad.join("\n")}`);
  process.exit(1);
}
console.log(`layers: ${present.length} files, every import points down`);
