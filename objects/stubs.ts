/** Stubs for the Durable Objects, named from the domain so call sites read as what they address. */

/** The account object of one user: quota ledger and rate limits. */
export function accountFor(env: Env, userId: string) {
  return env.USER_ACCOUNT.get(env.USER_ACCOUNT.idFromName(userId));
}

/** The session object of one upload: multipart state and expiry alarm. */
export function sessionFor(env: Env, uploadId: string) {
  return env.UPLOAD_SESSION.get(env.UPLOAD_SESSION.idFromName(uploadId));
}
