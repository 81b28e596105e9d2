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

/** The ControllerService client the controller dashboard uses. */
export type ControllerApi = Client<typeof ControllerService>;
/** The WorkerService client the worker dashboard uses. */
export type WorkerApi = Client<typeof WorkerService>;

/** sessionStorage key of the API token. */
export const TOKEN_KEY = "iris-token";

function storedToken(): string {
  try {
    return sessionStorage.getItem(TOKEN_KEY) ?? "";
  } catch {
    return "";
  }
}

/** Shows the token form once; submitting stores the token for this tab and reloads. */
function askForToken(message: string): void {
  if (document.getElementById("iris-token-form")) return;
  const form = document.createElement("form");
  form.id = "iris-token-form";
  Object.assign(form.style, {
    position: "fixed",
    inset: "0",
    zIndex: "1000",
    display: "flex",
    flexDirection: "column",
    alignItems: "center",
    justifyContent: "center",
    gap: "0.5em",
    background: "rgba(250, 250, 250, 0.97)",
  });
  const label = document.createElement("label");
  label.textContent = message;
  label.htmlFor = "iris-token-input";
  const input = document.createElement("input");
  input.id = "iris-token-input";
  input.type = "password";
  input.autocomplete = "off";
  input.placeholder = "API token";
  input.size = 48;
  const button = document.createElement("button");
  button.type = "submit";
  button.textContent = "Sign in";
  form.append(label, input, button);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (!token) return;
    sessionStorage.setItem(TOKEN_KEY, token);
    location.reload();
  });
  document.body.append(form);
  input.focus();
}

const bearer: Interceptor = (next) => async (req) => {
  const token = storedToken();
  if (token) req.header.set("authorization", `Bearer ${token}`);
  try {
    return await next(req);
  } catch (err) {
    if (err instanceof ConnectError && err.code === Code.Unauthenticated) {
      if (token) sessionStorage.removeItem(TOKEN_KEY);
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
