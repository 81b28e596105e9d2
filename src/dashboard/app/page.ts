/**
 * What the app shell gives a page, and what a page gives back.
 * @module
 */
import type { El } from "./dom.ts";
import type { PollStatus } from "./poll.ts";

/** Services the shell provides to pages. */
export interface PageEnv<Api> {
  readonly api: Api;
  /** Reports the state of the page's main refresh loop (shown in the header). */
  readonly onStatus: (s: PollStatus) => void;
  /** Sets the document title suffix. */
  readonly setTitle: (title: string) => void;
}

/** A mounted page: its root element and a disposer that stops its refresh loops. */
export interface Page {
  readonly el: El;
  dispose(): void;
}
