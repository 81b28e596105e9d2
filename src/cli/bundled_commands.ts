/**
 * Every command module, imported statically, for builds that must contain them all: cli_bundle.ts
 * (`deno task bundle`) and `deno task compile` (--include). Running from source never loads this:
 * main.ts imports the one module a command needs (see importModule there).
 * @module
 */
import { BUNDLED_MODULES } from "./main.ts";
import * as serve from "./serve.ts";
import * as job from "./job.ts";
import * as ports from "./ports.ts";
import * as jobDownload from "./job_download.ts";
import * as cluster from "./cluster.ts";
import * as auth from "./auth.ts";
import * as user from "./user.ts";
import * as key from "./key.ts";
import * as rpc from "./rpc.ts";
import * as endpoints from "./endpoints.ts";
import * as query from "./query.ts";
import * as process from "./process.ts";
import * as jobReport from "./job_report.ts";
import * as task from "./task.ts";
import * as clusterDebug from "./cluster_debug.ts";
import * as clusterTools from "./cluster_tools.ts";
import * as smoke from "./smoke.ts";
import * as errors from "../errors.ts";

/** The modules by the path main.ts knows them by. */
export const MODULES: Readonly<Record<string, unknown>> = {
  "./serve.ts": serve,
  "./job.ts": job,
  "./ports.ts": ports,
  "./job_download.ts": jobDownload,
  "./cluster.ts": cluster,
  "./auth.ts": auth,
  "./user.ts": user,
  "./key.ts": key,
  "./rpc.ts": rpc,
  "./endpoints.ts": endpoints,
  "./query.ts": query,
  "./process.ts": process,
  "./job_report.ts": jobReport,
  "./task.ts": task,
  "./cluster_debug.ts": clusterDebug,
  "./cluster_tools.ts": clusterTools,
  "./smoke.ts": smoke,
  "../errors.ts": errors,
};

(globalThis as { [BUNDLED_MODULES]?: Readonly<Record<string, unknown>> })[BUNDLED_MODULES] =
  MODULES;
