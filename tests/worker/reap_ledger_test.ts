/**
 * The reaper's ledger (`<root>/reap.json`) is rewritten in place after its first write: every
 * state reads back whole, shrinking content is padded (never leaves old bytes a parser would
 * take), and removing it closes the file.
 */
import {
  LEDGER_FILE,
  readLedger,
  ReapLedger,
  removeFilesOf,
  type SharedDirCache,
} from "../../src/worker/reaper.ts";
import { assertEquals } from "../_helpers/assert.ts";

Deno.test("ReapLedger: in-place rewrites always read back as the current state", async () => {
  const root = await Deno.makeTempDir({ prefix: "iris-ledger-" });
  try {
    const ledger = new ReapLedger(root, "tag1");
    assertEquals(readLedger(root)?.uids, []);
    ledger.addUid(199_999);
    assertEquals(readLedger(root)?.uids, [], "a uid waits for the end of the turn...");
    ledger.flush();
    assertEquals(readLedger(root)?.uids, [199_999], "...or for a flush (before its process)");
    ledger.removeUid(199_999);
    for (let uid = 200_000; uid < 200_050; uid++) ledger.addUid(uid);
    ledger.addSession(4242);
    // A session (its leader runs already) is written with the turn's other changes.
    assertEquals(readLedger(root)?.sids, []);
    await Promise.resolve();
    assertEquals(readLedger(root)?.uids.length, 50);
    assertEquals(readLedger(root)?.sids, [4242]);
    for (let uid = 200_000; uid < 200_049; uid++) ledger.removeUid(uid);
    ledger.removeSession(4242);
    // Removals are written together at the end of the turn.
    assertEquals(readLedger(root)?.uids.length, 50);
    await Promise.resolve();
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

Deno.test({
  name: "removeFilesOf: removes a uid's entries; a cached listing skips a quiet directory",
  ignore: Deno.build.os !== "linux" || Deno.uid() !== 0,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "iris-shared-" });
    try {
      const past = new Date(Date.now() - 5000);
      await Deno.writeTextFile(`${dir}/mine`, "x");
      await Deno.chown(`${dir}/mine`, 200_001, 200_001);
      await Deno.writeTextFile(`${dir}/other`, "x");
      await Deno.utime(dir, past, past);
      const cache: SharedDirCache = new Map();
      await removeFilesOf(new Set([200_001]), [dir], cache);
      assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["other"]);
      // The removal moved the mtime: the next sweep lists again and finds a new entry.
      await Deno.writeTextFile(`${dir}/new`, "x");
      await Deno.chown(`${dir}/new`, 200_002, 200_002);
      await Deno.utime(dir, past, past);
      await removeFilesOf(new Set([200_002]), [dir], cache);
      assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["other"]);
      // Quiet since its listing: listed from the cache (an entry hidden behind an unchanged
      // mtime is not seen — what the kernel's mtime rules out outside this test).
      await Deno.utime(dir, past, past);
      await removeFilesOf(new Set([200_003]), [dir], cache);
      await Deno.writeTextFile(`${dir}/hidden`, "x");
      await Deno.chown(`${dir}/hidden`, 200_003, 200_003);
      await Deno.utime(dir, past, past);
      await removeFilesOf(new Set([200_003]), [dir], cache);
      assertEquals(
        new Set([...Deno.readDirSync(dir)].map((e) => e.name)),
        new Set(["other", "hidden"]),
      );
      // Without the cache it is found.
      await removeFilesOf(new Set([200_003]), [dir]);
      assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["other"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
