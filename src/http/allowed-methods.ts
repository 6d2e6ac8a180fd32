import type { Hono } from "hono";

/** Methods a route registered with `app.all()` or `app.use()` stands for: not a method of its own. */
const ANY = "ALL";

/** A route's path as a matcher: `:param` is one segment, `*` any rest. */
function matcher(path: string): RegExp {
  const pattern = path
    .split("/")
    .map((segment) => {
      if (segment === "*") return ".*";
      if (segment.startsWith(":")) return "[^/]+";
      return segment.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    })
    .join("/");
  return new RegExp(`^${pattern}/?$`);
}

/**
 * The methods some route of `app` answers for `path`, from the app's own route table, for a `405` with
 * `Allow` (RFC 9110 §15.5.6: the origin server "MUST generate an Allow header field … containing a list
 * of the target resource's currently supported methods") instead of a 404 when only the method is wrong.
 * HEAD is listed wherever GET is, since Hono answers HEAD with the GET handler.
 */
export function allowedMethodsOf(app: Pick<Hono, "routes">) {
  let table: { method: string; match: RegExp }[] | null = null;
  return (path: string): string[] => {
    table ??= app.routes
      .filter((r) => r.method !== ANY && !r.path.endsWith("*"))
      .map((r) => ({ method: r.method, match: matcher(r.path) }));
    const methods = new Set(table.filter((r) => r.match.test(path)).map((r) => r.method));
    if (methods.has("GET")) methods.add("HEAD");
    return [...methods].sort();
  };
}
