/**
 * Google Cloud helpers shared by the worker and bundle store: the metadata server and the
 * accelerator check.
 * @module
 */
export { checkGceAccelerator } from "./accelerator_check.ts";
export { envOf, GceMetadata } from "./metadata.ts";
