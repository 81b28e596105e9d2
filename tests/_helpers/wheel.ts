/**
 * A tiny pure-Python wheel built on the spot (tests cannot reach PyPI): `<name>/__init__.py`
 * setting VALUE, plus the dist-info METADATA, WHEEL and RECORD that pip needs.
 * @module
 */
import { zipStore } from "./zip.ts";

/** Writes `<dir>/<name>-<version>-py3-none-any.whl`; returns its file name. */
export async function writeTinyWheel(
  dir: string,
  name = "tinypkg",
  version = "0.1",
  value = "42",
): Promise<string> {
  const info = `${name}-${version}.dist-info`;
  const files: Record<string, string> = {
    [`${name}/__init__.py`]: `VALUE = ${value}\n`,
    [`${info}/METADATA`]: `Metadata-Version: 2.1\nName: ${name}\nVersion: ${version}\n`,
    [`${info}/WHEEL`]:
      "Wheel-Version: 1.0\nGenerator: iris-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
  };
  files[`${info}/RECORD`] = [...Object.keys(files), `${info}/RECORD`].map((f) => `${f},,\n`)
    .join("");
  const file = `${name}-${version}-py3-none-any.whl`;
  await Deno.mkdir(dir, { recursive: true });
  await Deno.writeFile(`${dir}/${file}`, zipStore(files));
  return file;
}
