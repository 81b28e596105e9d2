/**
 * The reaper's ledger (`<root>/reap.json`) is rewritten in place after its first write: every
 * state reads back whole, shrinking content is padded (never leaves old bytes a parser would
 * take), and removing it closes the file.
 */
import { LEDGER_FILE, readLedger, ReapLedger } from "../../src/worker/reaper.ts";
import { assertEquals } from "../_helpers/assert.ts";

Deno.test("ReapLedger: in-place rewrites always read back as the current state", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-ledger-" });
  try {
    const ledger = new ReapLedger(root, "tag1");
    assertEquals(readLedger(root)?.uids, []);
    for (let uid = 200_000; uid < 200_050; uid++) ledger.addUid(uid);
    ledger.addSession(4242);
    assertEquals(readLedger(root)?.uids.length, 50);
    assertEquals(readLedger(root)?.sids, [4242]);
    for (let uid = 200_000; uid < 200_049; uid++) ledger.removeUid(uid);
    ledger.removeSession(4242);
    // Shorter than before: the tail is padding, not the old content.
    assertEquals(readLedger(root)?.uids, [200_049]);
    assertEquals(readLedger(root)?.sids, []);
    assertEquals(readLedger(root)?.tag, "tag1");
    ledger.remove();
    assertEquals(readLedger(root), undefined);
    ledger.addUid(1); // after remove: no file comes back
    await Deno.stat(`${root}/${LEDGER_FILE}`).then(
      () => {
        throw new Error("the ledger came back after remove()");
      },
      () => {},
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
