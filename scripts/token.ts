// Prints a user token signed with the local AUTH_SECRET: `npm run --silent token -- <userId> [--ttl 3600]`.
// With a key set (`kid:secret,...`), the first entry signs and its kid goes in the header, as the Worker does.
import { parseArgs } from "node:util";
import { SignJWT } from "jose";
import { parseKeySet } from "../src/auth/key-set.ts";
import { ensureDevVars } from "./dev-vars.ts";

const USER_ID = /^[A-Za-z0-9._-]{1,128}$/;

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: { ttl: { type: "string", default: "3600" } },
});
const [userId] = positionals;
const ttl = Number(values.ttl);
if (!userId || !USER_ID.test(userId) || !Number.isSafeInteger(ttl) || ttl <= 0) {
  console.error("usage: npm run --silent token -- <userId> [--ttl seconds]");
  console.error("  userId: 1-128 characters of A-Z a-z 0-9 . _ -; ttl: a positive whole number of seconds");
  process.exit(2);
}
const { vars } = ensureDevVars();
const now = Math.floor(Date.now() / 1000);
const key = parseKeySet("AUTH_SECRET", vars.AUTH_SECRET ?? "", true).signing;
const header = { alg: "HS256", typ: "JWT", ...(key.kid === null ? {} : { kid: key.kid }) };
const token = new SignJWT({ sub: userId, iat: now, exp: now + ttl }).setProtectedHeader(header);
console.log(await token.sign(new TextEncoder().encode(key.secret)));
