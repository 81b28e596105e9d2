/**
 * Connect clients for the dashboards: JSON over fetch to the page's own origin, so the
 * browser only talks to the server that served it (`connect-src 'self'`).
 *
 * With auth on, every call carries the token kept in sessionStorage (per tab, gone when it
 * closes); an Unauthenticated answer shows a small form asking for one, then reloads.
 * @module
 */
import {
  type Client,
  Code,
  ConnectError,
  createClient,
  type Interceptor,
} from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { ControllerService } from "../../rpc/gen/iris/v1/controller_pb.ts";
import { WorkerService } from "../../rpc/gen/iris/v1/worker_pb.ts";
import { doc, h, on, setStyle } from "./dom.ts";

/** The ControllerService client the controller dashboard uses. */
export type ControllerApi = Client<typeof ControllerService>;
/** The WorkerService client the worker dashboard uses. */
export type WorkerApi = Client<typeof WorkerService>;

/** sessionStorage key of the API token. */
export const TOKEN_KEY = "iris-token";

/** The tab's sessionStorage and location (browser only; typed here since lib.dom is off). */
function browser(): {
  sessionStorage: {
    getItem(k: string): string | null;
    setItem(k: string, v: string): void;
    removeItem(k: string): void;
  };
  location: { reload(): void };
} {
  return globalThis as unknown as ReturnType<typeof browser>;
}

function storedToken(): string {
  try {
    return browser().sessionStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

/** Shows the token form once; submitting stores the token for this tab and reloads. */
function askForToken(message: string): void {
  const d = doc();
  if (d.body.querySelector("#iris-token-form")) return;
  const input = h("input", {
    id: "iris-token-input",
    type: "password",
    autocomplete: "off",
    placeholder: "API token",
    size: 48,
  });
  const form = h(
    "form",
    { id: "iris-token-form" },
    h("label", { for: "iris-token-input" }, message),
    input,
    h("button", { type: "submit" }, "Sign in"),
  );
  setStyle(form, {
    position: "fixed",
    inset: "0",
    "z-index": "1000",
    display: "flex",
    "flex-direction": "column",
    "align-items": "center",
    "justify-content": "center",
    gap: "0.5em",
    background: "rgba(250, 250, 250, 0.97)",
  });
  on(form, "submit", (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    browser().sessionStorage.setItem(TOKEN_KEY, token);
    browser().location.reload();
  });
  d.body.appendChild(form);
}

const bearer: Interceptor = (next) => async (req) => {
  const token = storedToken();
  if (token) req.header.set("authorization", `Bearer ${token}`);
  try {
    return await next(req);
  } catch (err) {
    if (err instanceof ConnectError && err.code === Code.Unauthenticated) {
      if (token) browser().sessionStorage.removeItem(TOKEN_KEY);
      askForToken(token ? "That token was not accepted. Token:" : "This cluster needs a token:");
    }
    throw err;
  }
};

function transport(baseUrl: string) {
  return createConnectTransport({ baseUrl, useBinaryFormat: false, interceptors: [bearer] });
}

/** A ControllerService client for `baseUrl` (the page origin). */
export function controllerApi(baseUrl: string): ControllerApi {
  return createClient(ControllerService, transport(baseUrl));
}

/** A WorkerService client for `baseUrl` (the page origin). */
export function workerApi(baseUrl: string): WorkerApi {
  return createClient(WorkerService, transport(baseUrl));
}
