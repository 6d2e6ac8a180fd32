// Helpers of the tests that address the Durable Objects directly (test/objects), and of the HTTP tests
// that wait for an object's outbox or stand in for a Worker that died.
import { env, runDurableObjectAlarm } from "cloudflare:test";
import type { TusWriteRequest } from "../../objects/upload-session/contract";
import type { RequestMeta } from "../../src/core/audit";
import type { AccountPolicy } from "../../src/core/policy";

/** Request metadata for calling an object's RPC methods directly. */
export const testMeta: RequestMeta = { requestId: "test", ipAddress: null, userAgent: null };

/**
 * Runs an object's alarm until its outbox is empty (its own alarm may be running at the same moment, in
 * which case runDurableObjectAlarm finds nothing to run: wait for it).
 */
export async function drain(stub: { pendingCheckpoints(): Promise<Record<string, number>> }): Promise<void> {
  for (let i = 0; i < 100; i++) {
    await runDurableObjectAlarm(stub as unknown as DurableObjectStub);
    if (Object.keys(await stub.pendingCheckpoints()).length === 0) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`outbox not drained: ${JSON.stringify(await stub.pendingCheckpoints())}`);
}

/**
 * Runs an object's alarm so that a run begins after this call, for a test that has just made some of the
 * alarm's work due through storage. The runtime fires due alarms on its own, and while it is running one
 * runDurableObjectAlarm finds nothing to run (and that run may have begun before the change): try again.
 * Should the runtime's own runs take all that is due, the test's assertions see their result.
 */
export async function runAlarmAfter(stub: DurableObjectStub): Promise<void> {
  for (let i = 0; i < 50; i++) {
    if (await runDurableObjectAlarm(stub)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A generous account policy with some limits set, for calling the account object directly. */
export function testPolicy(limits: Partial<AccountPolicy>): AccountPolicy {
  return {
    quotaBytes: 1024 ** 3,
    maxFileSizeBytes: 1024 ** 3,
    allowedContentTypes: ["*/*"],
    requestsPerSecond: 1000,
    burst: 1000,
    bytesPerMinute: 1024 ** 3,
    maxActiveUploads: 100,
    ...limits,
  };
}

/**
 * What a tus writer asks of the session before it reads a body of `contentLength` bytes at offset 0 (no
 * checksum, no new length): for standing in for a writer in a test.
 */
export function tusWriteRequest(contentLength: number, leaseMs: number): TusWriteRequest {
  return { offset: 0, contentLength, uploadLength: null, checksum: false, policy: testPolicy({}), leaseMs };
}

/** The `multipart_uploads` row an upload session checkpointed into D1, or null. */
export async function d1Upload(uploadId: string) {
  return env.DB.prepare("SELECT * FROM multipart_uploads WHERE upload_id = ?").bind(uploadId).first<any>();
}
