import { createApp } from "./http/app";
import { sweepExpiredUploads } from "./uploads/expiry-sweep";

export { UploadSession } from "../objects/upload-session/upload-session";
export { UserAccount } from "../objects/user-account/user-account";

const app = createApp();

export default {
  fetch: app.fetch,
  async scheduled(_controller, env, ctx) {
    ctx.waitUntil(sweepExpiredUploads(env));
  },
} satisfies ExportedHandler<Env>;
