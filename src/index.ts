import { createApp } from "./app";
import { sweepExpiredUploads } from "./sweep";

export { UserAccount } from "../objects/user-account";
export { UploadSession } from "../objects/upload-session";

const app = createApp();

export default {
  fetch: app.fetch,
  async scheduled(_controller, env, ctx) {
    ctx.waitUntil(sweepExpiredUploads(env));
  },
} satisfies ExportedHandler<Env>;
