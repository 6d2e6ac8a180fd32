import { createApp } from "./app";
import { sweepExpiredUploads } from "./sweep";

export { UploadSession } from "../objects/upload-session";
export { UserAccount } from "../objects/user-account";

const app = createApp();

export default {
  fetch: app.fetch,
  async scheduled(_controller, env, ctx) {
    ctx.waitUntil(sweepExpiredUploads(env));
  },
} satisfies ExportedHandler<Env>;
