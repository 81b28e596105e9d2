#!/usr/bin/env -S deno run -A
/**
 * The entry of `deno task bundle`: cli.ts with every command module inside (src/cli/
 * bundled_commands.ts, evaluated first), since a bundle cannot import files at run time. From
 * source, run cli.ts: it loads only the module of the command it runs.
 * @module
 */
import "./src/cli/bundled_commands.ts";
import { runCli } from "./cli.ts";

if (import.meta.main) await runCli();
