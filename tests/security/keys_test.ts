/**
 * Users and API keys (#24) through the real CLI against a controller with token auth: admins
 * create users (the config's admin token is the bootstrap admin), keys are shown once and stored
 * hashed, `iris login` keeps one in the user's config dir (0600), `iris whoami` names the caller,
 * revocation and expiry apply on the next request, and users and keys survive a restart.
 */
import { assert, assertEquals, assertMatch } from "../_helpers/assert.ts";
import { IrisClient } from "../../mod.ts";
import { seconds, waitFor } from "../../src/time.ts";
import { runIris } from "../_helpers/iris_process.ts";
import { startSecureCluster } from "./_cluster.ts";
import { hashToken } from "../../src/auth/mod.ts";

Deno.test("API keys: create, login, whoami, revoke and expiry take effect at once; restart keeps them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "iris-keys-" });
  const stateDir = `${dir}/state`;
  const home = `${dir}/home`;
  await Deno.mkdir(home);
  try {
    let carolToken: string;
    {
      await using cluster = await startSecureCluster({ stateDir, rootDir: `${dir}/w1` });
      const url = cluster.controller.url;
      const iris = (args: string[], token?: string) =>
        runIris(args, {
          env: {
            HOME: home,
            XDG_CONFIG_HOME: "",
            IRIS_CONTROLLER_URL: url,
            ...(token ? { IRIS_TOKEN: token } : { IRIS_TOKEN: "" }),
          },
        });
      const { admin, alice } = cluster.tokens;

      const denied = await iris(["user", "create", "dave"], alice);
      assert(denied.code !== 0);
      assertMatch(denied.stderr, /user alice may not create users \(admins only\)/);
      assertEquals((await iris(["user", "create", "carol"], admin)).code, 0);

      const created = await iris(["key", "create", "--user", "carol", "--name", "ci"], admin);
      assertEquals(created.code, 0, created.stderr);
      carolToken = created.stdout.trim();
      assertMatch(carolToken, /^iris-key-v1\.[0-9a-f]{12}\.\S+$/);
      assertMatch(created.stderr, /shown only now/);
      // Stored hashed: the file has the hash, never the key.
      const stored = await Deno.readTextFile(`${stateDir}/accounts.json`);
      assert(!stored.includes(carolToken.split(".")[2]!), "the key's secret is not stored");
      assert(stored.includes(hashToken(carolToken)));

      // Login stores the key 0600; later commands use it without IRIS_TOKEN.
      const keyFile = `${dir}/carol.key`;
      await Deno.writeTextFile(keyFile, carolToken + "\n", { mode: 0o600 });
      const login = await iris(["login", "--token-file", keyFile]);
      assertEquals(login.code, 0, login.stderr);
      assertMatch(login.stdout, /as carol \(user\)/);
      const creds = `${home}/.config/iris/credentials.json`;
      assertEquals((await Deno.stat(creds)).mode! & 0o777, 0o600);
      const keyId = carolToken.split(".")[1]!;
      const who = await iris(["whoami"]);
      assertEquals(who.code, 0, who.stderr);
      assertEquals(who.stdout, `carol (user) with key ${keyId}\n`);

      // A key user submits under their own name; other users cannot touch their keys.
      const jobId = await new IrisClient(url, { token: carolToken }).submit({
        name: "hello",
        command: ["true"],
      });
      assertMatch(jobId, /^\/carol\//);
      const steal = await iris(["key", "revoke", keyId], alice);
      assertMatch(steal.stderr, /may not revoke the keys of carol/);
      const list = await iris(["key", "list"]);
      assertMatch(list.stdout, new RegExp(`${keyId} +carol +ci`));

      // Revocation applies to the very next request.
      assertEquals((await iris(["key", "revoke", keyId])).code, 0);
      const after = await iris(["whoami"]);
      assert(after.code !== 0);
      assertMatch(after.stderr, /invalid token/);

      // Expiry: a 1s key stops working once it has passed.
      const short = await iris(["key", "create", "--expires", "1s"], alice);
      assertEquals(short.code, 0, short.stderr);
      const shortToken = short.stdout.trim();
      await waitFor(async () => (await iris(["whoami"], shortToken)).code !== 0, {
        timeout: seconds(10),
        what: "the 1s key to expire",
      });
      assertEquals((await iris(["key", "create", "--expires", "soon"], alice)).code, 2);

      // A fresh key for carol, kept across the restart.
      carolToken = (await iris(["key", "create", "--user", "carol"], admin)).stdout.trim();
    }
    await using again = await startSecureCluster({ stateDir, rootDir: `${dir}/w2` });
    const me = await new IrisClient(again.controller.url, { token: carolToken }).call((rpc) =>
      rpc.getCurrentUser({})
    );
    assertEquals([me.user, me.role], ["carol", "user"]);
    const users = await new IrisClient(again.controller.url, { token: again.tokens.admin }).call((
      rpc,
    ) => rpc.listUsers({}));
    assertEquals(
      users.users.map((u) => `${u.user}:${u.role}:${u.source}`),
      ["alice:user:config", "bob:user:config", "carol:user:created", "root:admin:config"],
    );
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
