/**
 * The attribute policy of the `h()` DOM helper, as pure functions (unit-tested in Deno).
 * Data never reaches the DOM as markup: text goes through text nodes, and attributes pass
 * {@linkcode checkAttribute}.
 * @module
 */

/** Attributes whose value is a URL and must not use a script-capable scheme. */
const URL_ATTRIBUTES: ReadonlySet<string> = new Set([
  "href",
  "src",
  "action",
  "formaction",
  "xlink:href",
  "poster",
  "cite",
  "background",
  "data",
  "ping",
]);

/** Attributes that can carry markup or inline styles and are never set. */
const FORBIDDEN_ATTRIBUTES: ReadonlySet<string> = new Set(["srcdoc", "style", "srcset"]);

/** Elements `h()` refuses to create. */
export const FORBIDDEN_TAGS: ReadonlySet<string> = new Set([
  "script",
  "iframe",
  "frame",
  "object",
  "embed",
  "base",
  "meta",
  "link",
  "style",
  "template",
]);

const NAME_RE = /^[a-zA-Z][a-zA-Z0-9_:.-]*$/;
const SCHEME_RE = /^([a-z][a-z0-9+.-]*):/;
const SAFE_SCHEMES: ReadonlySet<string> = new Set(["http", "https", "mailto"]);

/**
 * True for relative URLs ("#/job/x", "/app.css", "page?x=1") and http(s)/mailto URLs.
 * Control characters and whitespace are ignored when looking for the scheme, as browsers do,
 * so "java\tscript:" is caught.
 */
export function isSafeUrl(url: string): boolean {
  // deno-lint-ignore no-control-regex
  const compact = url.replace(/[\u0000-\u0020\u007f-\u009f]/g, "").toLowerCase();
  const m = SCHEME_RE.exec(compact);
  if (!m) return true; // relative, or protocol-relative (http/https)
  return SAFE_SCHEMES.has(m[1]!);
}

/** Thrown by {@linkcode checkAttribute} for an attribute `h()` must not set. */
export class UnsafeAttributeError extends Error {
  constructor(name: string, reason: string) {
    super(`Cannot set attribute '${name}': ${reason}`);
    this.name = "UnsafeAttributeError";
  }
}

/**
 * Validates one attribute for `h()` and returns the string to set.
 * @throws {UnsafeAttributeError} for event handlers (`on*`), inline styles, `srcdoc`, malformed
 * names, and URL attributes with a non-http(s)/mailto scheme (`javascript:`, `data:`, …).
 */
export function checkAttribute(name: string, value: string | number | boolean): string {
  if (!NAME_RE.test(name)) throw new UnsafeAttributeError(name, "malformed name");
  const lower = name.toLowerCase();
  if (lower.startsWith("on")) {
    throw new UnsafeAttributeError(name, "event handlers must use addEventListener");
  }
  if (FORBIDDEN_ATTRIBUTES.has(lower)) throw new UnsafeAttributeError(name, "not allowed");
  const text = value === true ? "" : String(value);
  if (URL_ATTRIBUTES.has(lower) && !isSafeUrl(text)) {
    throw new UnsafeAttributeError(name, "unsafe URL scheme");
  }
  return text;
}
