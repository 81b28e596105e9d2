/**
 * A tiny, safe DOM builder. `h(tag, attrs, ...children)` creates elements; strings become text
 * nodes (never markup), attributes pass the policy in `safe.ts` (no `on*`, no inline styles,
 * no `javascript:` URLs). Events are attached with {@linkcode on}; dynamic sizes (gauge widths,
 * tree indentation) with {@linkcode setStyle}, which uses the CSSOM and so satisfies the CSP.
 *
 * The DOM types below are a minimal, module-scoped description of the browser APIs the
 * dashboard uses. They stand in for `lib.dom`, which cannot be enabled for these files alone:
 * a `/// <reference lib="dom" />` would apply to every file of a project-wide `deno check`.
 * @module
 */
import { checkAttribute, FORBIDDEN_TAGS } from "./safe.ts";

/** A DOM node (text, element or fragment). */
export interface DomNode {
  readonly firstChild: DomNode | null;
  textContent: string | null;
  appendChild<T extends DomNode>(node: T): T;
  remove(): void;
}

/** An element, with the members the dashboard uses. */
export interface El extends DomNode, EventTarget {
  className: string;
  title: string;
  id: string;
  hidden: boolean;
  readonly classList: {
    add(...tokens: string[]): void;
    remove(...tokens: string[]): void;
    toggle(token: string, force?: boolean): boolean;
  };
  readonly style: { setProperty(name: string, value: string): void };
  scrollTop: number;
  readonly scrollHeight: number;
  readonly clientHeight: number;
  setAttribute(name: string, value: string): void;
  getAttribute(name: string): string | null;
  removeAttribute(name: string): void;
  replaceChildren(...nodes: DomNode[]): void;
  prepend(...nodes: DomNode[]): void;
  querySelector(selector: string): El | null;
  querySelectorAll(selector: string): Iterable<El>;
  readonly lastElementChild: El | null;
  readonly previousElementSibling: El | null;
  readonly children: Iterable<El>;
  insertBefore<T extends DomNode>(node: T, reference: DomNode | null): T;
  scrollIntoView(options?: { block?: "start" | "center" | "end" | "nearest" }): void;
}

/** `<input>` */
export interface InputEl extends El {
  value: string;
  checked: boolean;
  disabled: boolean;
}

/** `<select>` */
export interface SelectEl extends El {
  value: string;
  readonly options: { readonly length: number };
}

/** `<button>` */
export interface ButtonEl extends El {
  disabled: boolean;
}

/** The document, with the members the dashboard uses. */
export interface Doc extends EventTarget {
  readonly hidden: boolean;
  title: string;
  readonly body: El;
  readonly documentElement: El;
  createElement(tag: string): El;
  createElementNS(namespace: string, tag: string): El;
  createTextNode(text: string): DomNode;
  createDocumentFragment(): DomNode;
}

/** Element types of tags with extra members; other tags give {@linkcode El}. */
interface SpecialTags {
  input: InputEl;
  select: SelectEl;
  button: ButtonEl;
}

/** The element type `h(tag)` returns. */
export type ElementOf<K extends string> = K extends keyof SpecialTags ? SpecialTags[K] : El;

/** The page's document (only valid in a browser). */
export function doc(): Doc {
  return (globalThis as unknown as { document: Doc }).document;
}

/** Anything `h()` accepts as a child. Falsy values (except 0) are skipped. */
export type Child = DomNode | string | number | null | undefined | false | readonly Child[];

/** Attribute values; `false`, `null` and `undefined` leave the attribute unset. */
export type AttrValue = string | number | boolean | null | undefined;

/** Attributes for `h()`: `class`, `href`, `title`, `data-*`, `aria-*`, … */
export type Attrs = Readonly<Record<string, AttrValue>>;

/** Creates an element with safe attributes and text/element children. */
export function h<K extends string>(
  tag: K,
  attrs?: Attrs | null,
  ...children: Child[]
): ElementOf<K> {
  if (FORBIDDEN_TAGS.has(tag.toLowerCase())) throw new Error(`Cannot create element '${tag}'`);
  const el = doc().createElement(tag);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === false || value === null || value === undefined) continue;
      el.setAttribute(name, checkAttribute(name, value));
    }
  }
  append(el, children);
  return el as ElementOf<K>;
}

/** The SVG namespace, for {@linkcode svg}. */
export const SVG_NS = "http://www.w3.org/2000/svg";

/** SVG elements `svg()` may create: shapes and text only (no `<script>`, `<foreignObject>`). */
const SVG_TAGS: ReadonlySet<string> = new Set([
  "svg",
  "g",
  "polyline",
  "line",
  "rect",
  "circle",
  "path",
  "title",
  "text",
]);

/** Creates an SVG element (createElementNS) with attributes checked like `h()`'s. */
export function svg(tag: string, attrs?: Attrs | null, ...children: Child[]): El {
  if (!SVG_TAGS.has(tag)) throw new Error(`Cannot create SVG element '${tag}'`);
  const el = doc().createElementNS(SVG_NS, tag);
  if (attrs) {
    for (const [name, value] of Object.entries(attrs)) {
      if (value === false || value === null || value === undefined) continue;
      el.setAttribute(name, checkAttribute(name, value));
    }
  }
  append(el, children);
  return el;
}

/** Appends children (text as text nodes) to `parent`. */
export function append(parent: DomNode, children: readonly Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false || c === "") continue;
    if (Array.isArray(c)) append(parent, c);
    else if (typeof c === "string" || typeof c === "number") {
      parent.appendChild(doc().createTextNode(String(c)));
    } else parent.appendChild(c as DomNode);
  }
}

/** Replaces all children of `parent`. */
export function replace(parent: El, ...children: Child[]): void {
  const frag = doc().createDocumentFragment();
  append(frag, children);
  parent.replaceChildren(frag);
}

/** Adds an event listener and returns the element (for chaining inside `h()` calls). */
export function on<E extends El>(el: E, type: string, handler: (ev: Event) => void): E {
  el.addEventListener(type, handler);
  return el;
}

/** Sets CSS properties through the CSSOM (allowed under `style-src 'self'`). */
export function setStyle<E extends El>(el: E, props: Readonly<Record<string, string>>): E {
  for (const [k, v] of Object.entries(props)) el.style.setProperty(k, v);
  return el;
}

/** Scrolls the window (browser only). */
export function scrollWindowTo(x: number, y: number): void {
  (globalThis as unknown as { scrollTo(x: number, y: number): void }).scrollTo(x, y);
}

/** Replaces the URL's hash without a `hashchange` event or a history entry (view state in links). */
export function replaceHash(hash: string): void {
  if (location.hash === hash) return;
  (globalThis as unknown as {
    history: { replaceState(data: null, unused: string, url: string): void };
  }).history.replaceState(null, "", hash);
}

/**
 * Offers `text` as a file download named `name` (a same-origin blob URL on a detached anchor,
 * never rendered, so it needs no exception in the attribute policy).
 */
export function downloadText(name: string, text: string): void {
  const g = globalThis as unknown as {
    Blob: new (parts: string[], options: { type: string }) => unknown;
    URL: { createObjectURL(b: unknown): string; revokeObjectURL(u: string): void };
    document: { createElement(tag: "a"): { href: string; download: string; click(): void } };
  };
  const url = g.URL.createObjectURL(new g.Blob([text], { type: "text/plain;charset=utf-8" }));
  const a = g.document.createElement("a");
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => g.URL.revokeObjectURL(url), 10_000);
}

/** Navigates to a hash route. */
export function goHash(hash: string): void {
  location.hash = hash;
}
