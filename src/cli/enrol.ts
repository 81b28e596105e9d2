/**
 * `iris worker serve --enrol-token-file FILE`: a gcp worker's first start with auth. When the
 * worker token file is missing or empty, the worker sends the one-time enrolment token (as its
 * bearer token) to EnrolWorker, writes the worker token it gets to `--worker-token-file` (0600)
 * and deletes the enrolment token. Later starts find the worker token and skip this.
 * @module
 */
import { type OptionSpec, UsageError } from "./args.ts";
import { controllerClient } from "../rpc/mod.ts";
import { Backoff, Deadline, minutes, seconds, sleep } from "../time.ts";

/** The option's spec. */
export const ENROL_TOKEN_OPTION: OptionSpec = {
  type: "string",
  value: "FILE",
  description:
    "One-time enrolment token to trade for the worker token when --worker-token-file is empty (gcp with auth)",
};

function nonEmpty(path: string): boolean {
  try {
    return Deno.statSync(path).size > 0;
  } catch {
    return false;
  }
}

/** Enrols when asked to and needed. @throws {UsageError} on a bad combination or a refusal */
export async function enrolIfNeeded(
  controllerUrl: string,
  workerId: string | undefined,
  p: { values: Record<string, unknown> },
): Promise<void> {
  const enrolFile = typeof p.values["enrol-token-file"] === "string"
    ? p.values["enrol-token-file"] as string
    : undefined;
  if (enrolFile === undefined) return;
  const tokenFile = typeof p.values["worker-token-file"] === "string"
    ? p.values["worker-token-file"] as string
    : undefined;
  if (!tokenFile) throw new UsageError("--enrol-token-file needs --worker-token-file");
  if (!workerId) throw new UsageError("--enrol-token-file needs --worker-id");
  if (nonEmpty(tokenFile)) return;
  let enrolToken: string;
  try {
    enrolToken = (await Deno.readTextFile(enrolFile)).trim();
  } catch (err) {
    throw new UsageError(`--enrol-token-file ${enrolFile}: ${(err as Error).message}`);
  }
  const rpc = controllerClient(controllerUrl, { token: enrolToken });
  const deadline = Deadline.after(minutes(10));
  const backoff = new Backoff({ initial: seconds(1), max: seconds(15) });
  let lastError: unknown;
  // The controller may still be starting: retry unavailability, not refusals.
  while (true) {
    try {
      const res = await rpc.enrolWorker({ workerId });
      await Deno.writeTextFile(`${tokenFile}.tmp`, res.workerToken, { mode: 0o600 });
      await Deno.rename(`${tokenFile}.tmp`, tokenFile);
      await Deno.remove(enrolFile);
      return;
    } catch (err) {
      lastError = err;
      const msg = err instanceof Error ? err.message : String(err);
      if (/permission_denied|unauthenticated|invalid token/i.test(msg)) break;
      const delay = backoff.next();
      if (deadline.remaining() < delay) break;
      await sleep(delay);
    }
  }
  throw new UsageError(
    `enrolment failed: ${lastError instanceof Error ? lastError.message : String(lastError)}`,
  );
}
