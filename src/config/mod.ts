/**
 * Cluster configuration: load and validate YAML into the ClusterConfig proto, apply defaults,
 * derive the cluster mode and print a summary. See docs/config.md for the schema.
 * @module
 */
export {
  type ConfigMode,
  configMode,
  labelPrefixOf,
  loadConfig,
  parseConfig,
  parseConfigObject,
  type ParseConfigOptions,
  parseConfigYaml,
  readConfigText,
} from "./load.ts";
export { loadConfigAsLocal, type LocalVariant, localVariantTree } from "./as_local.ts";
export { formatConfigSummary } from "./summary.ts";
export {
  applyDefaults,
  type ApplyDefaultsOptions,
  DEFAULTS,
  detectMachine,
  groupVmsPerSlice,
  localVmShare,
  type MachineInfo,
} from "./defaults.ts";
export { type ConfigIssue, ConfigValidationError } from "./issues.ts";
export { parseCpuMillicores, parseDurationMs, parseSizeBytes } from "./units.ts";
export { TPU_VARIANT_PREFIXES, type TpuShape, tpuShape } from "./tpu_variants.ts";
export {
  AUTH_KEYS,
  type ControllerAuth,
  controllerAuth,
  parseAuthDocument,
  resolveWorkerToken,
  workerTokenEnv,
  type WorkerTokenSources,
} from "./auth.ts";
export { expandZones } from "./defaults.ts";
export { suggestKey } from "./issues.ts";
export { TPU_VARIANT_EXAMPLES } from "./tpu_variants.ts";
