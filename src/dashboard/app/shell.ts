/**
 * The app shell shared by both dashboards: top bar with tabs and a live indicator, and a hash
 * router that mounts one page at a time (disposing the previous page's refresh loops).
 * @module
 */
import { doc, type El, h, on, replace, scrollWindowTo } from "./dom.ts";
import { formatClock } from "../../format.ts";
import type { Page, PageEnv } from "./page.ts";
import type { PollStatus } from "./poll.ts";

/** A tab in the top bar. */
export interface Tab<R> {
  readonly label: string;
  readonly href: string;
  /** Whether the tab is highlighted for `route`. */
  readonly active: (route: R) => boolean;
}

/** Options for {@linkcode startShell}. */
export interface ShellOptions<R, Api> {
  /** Product label next to the logo, e.g. "controller". */
  readonly product: string;
  readonly tabs: readonly Tab<R>[];
  readonly api: Api;
  readonly parse: (hash: string) => R;
  readonly mount: (route: R, env: PageEnv<Api>) => Page;
  /** More top-bar items (e.g. a link to the other dashboard). */
  readonly extra?: readonly El[];
}

type Theme = "auto" | "dark" | "light";
const THEMES: readonly Theme[] = ["auto", "dark", "light"];
const THEME_KEY = "iris-theme";

function storage():
  | { getItem(k: string): string | null; setItem(k: string, v: string): void }
  | undefined {
  try {
    return (globalThis as unknown as { localStorage: ReturnType<typeof storage> }).localStorage;
  } catch {
    return undefined;
  }
}

/** Applies a theme: "auto" follows prefers-color-scheme (the CSS media query). */
function applyTheme(t: Theme): void {
  const root = doc().documentElement;
  if (t === "auto") root.removeAttribute("data-theme");
  else root.setAttribute("data-theme", t);
}

/** The theme button: auto → dark → light → auto, remembered in localStorage. */
function themeToggle(): El {
  const saved = storage()?.getItem(THEME_KEY);
  let theme: Theme = THEMES.includes(saved as Theme) ? saved as Theme : "auto";
  applyTheme(theme);
  const btn = h("button", {
    type: "button",
    class: "theme-toggle",
    id: "theme-toggle",
    title: "Colour theme (auto follows the system)",
  }, `Theme: ${theme}`);
  on(btn, "click", () => {
    theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length]!;
    applyTheme(theme);
    try {
      storage()?.setItem(THEME_KEY, theme);
    } catch { /* private mode */ }
    btn.textContent = `Theme: ${theme}`;
  });
  return btn;
}

/** Renders the shell into `doc().body` and routes on `hashchange`. */
export function startShell<R, Api>(opts: ShellOptions<R, Api>): void {
  const live = h(
    "span",
    { class: "live live-loading", id: "live-status", role: "status" },
    "Connecting…",
  );
  const tabLinks = opts.tabs.map((t) => h("a", { class: "tab-btn", href: t.href }, t.label));
  const main = h("main", { class: "content", id: "content" });
  const brand = h(
    "a",
    { class: "brand", href: opts.tabs[0]?.href ?? "#/" },
    h("img", { src: "/favicon.svg", alt: "", width: 20, height: 20 }),
    h("span", { class: "brand-name" }, "Iris"),
    h("span", { class: "brand-product" }, opts.product),
  );
  replace(
    doc().body,
    h(
      "header",
      { class: "topbar" },
      brand,
      h("nav", { class: "tabs", "aria-label": "Sections" }, tabLinks),
      h("div", { class: "spacer" }),
      ...(opts.extra ?? []),
      themeToggle(),
      live,
    ),
    main,
  );

  const onStatus = (s: PollStatus) => {
    if (s.state === "ok") {
      live.className = "live live-ok";
      live.textContent = `Live · updated ${formatClock(s.at).slice(0, 8)}`;
      live.title = "";
    } else if (s.state === "error") {
      live.className = "live live-error";
      live.textContent = "Disconnected";
      live.title = s.error;
    } else {
      live.className = "live live-paused";
      live.textContent = "Paused (tab hidden)";
    }
  };
  const setTitle = (t: string) => {
    doc().title = `${t} · Iris ${opts.product}`;
  };

  let current: Page | undefined;
  const route = () => {
    const r = opts.parse(location.hash);
    current?.dispose();
    live.className = "live live-loading";
    live.textContent = "Loading…";
    live.title = "";
    tabLinks.forEach((a, i) => {
      const active = opts.tabs[i]!.active(r);
      a.classList.toggle("active", active);
      if (active) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    });
    current = opts.mount(r, { api: opts.api, onStatus, setTitle });
    replace(main, current.el);
    scrollWindowTo(0, 0);
  };
  addEventListener("hashchange", route);
  route();
}
