/**
 * `iris smoke`: the runner and its jobs.
 * @module
 */
export { SMOKE_JOBS } from "./jobs.ts";
export { DEFAULT_TPU_TYPE, runSmoke, SMOKE_MODES } from "./runner.ts";
