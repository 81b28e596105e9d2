/**
 * Temporary directories for tests, removed even when the test fails:
 * `await using dir = await tempDir("iris-x-")` (then `dir.path`), or
 * `withTempDir("iris-x-", async (dir) => …)`.
 * @module
 */

/** A fresh directory under the system temp dir, removed (recursively) when disposed. */
export interface TempDir extends AsyncDisposable {
  readonly path: string;
}

/** Makes a temp dir named `<prefix><random>`. */
export async function tempDir(prefix: string): Promise<TempDir> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }).catch(() => {}),
  };
}

/** Runs `fn` with a fresh temp dir, removed afterwards whether `fn` passed or threw. */
export async function withTempDir<T>(
  prefix: string,
  fn: (dir: string) => Promise<T> | T,
): Promise<T> {
  await using dir = await tempDir(prefix);
  return await fn(dir.path);
}
