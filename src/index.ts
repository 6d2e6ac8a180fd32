import { createApp } from "./app";

export { UserAccount } from "../objects/user-account";
export { UploadSession } from "../objects/upload-session";

const app = createApp();

export default {
  fetch: app.fetch,
} satisfies ExportedHandler<Env>;
