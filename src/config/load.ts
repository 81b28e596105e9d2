/**
 * Loading a cluster config: YAML text → parsed tree → field checks → cross-field checks →
 * defaults → ClusterConfig. Every problem of a file is reported at once as one ConfigError
 * (one `path: problem` per line); nothing is returned from a bad config.
 *
 * Note: npm:yaml reads the env vars LOG_TOKENS and LOG_STREAM, so parsing inside a
 * permission-restricted Worker needs `--allow-env=LOG_TOKENS,LOG_STREAM` (the CLI runs with -A).
 * @module
 */
import { isCollection, LineCounter, parseDocument, visit } from "yaml";
import type { ClusterConfig } from "../rpc/gen/iris/v1/config_pb.ts";
import { ConfigError } from "../errors.ts";
import { Issues } from "./issues.ts";
import { YamlReader } from "./reader.ts";
import { CONTROLLER_KINDS, parseTree } from "./parse.ts";
import { validateConfig } from "./validate.ts";
import { applyDefaults, type MachineInfo } from "./defaults.ts";

/** How a cluster runs; decided by the controller kind alone. */
export type ConfigMode = "local" | "gcp" | "manual" | "kubernetes";

/** Options of {@linkcode parseConfig} and {@linkcode loadConfig}. */
export interface ParseConfigOptions {
  /** The machine local vm_resources default from (tests pin it). @default detectMachine() */
  readonly machine?: MachineInfo;
}

/**
 * Reads and validates the YAML config file at `path`.
 * @throws {ConfigError} when the file cannot be read or the config is invalid
 */
export async function loadConfig(
  path: string,
  options: ParseConfigOptions = {},
): Promise<ClusterConfig> {
  return parseConfig(await readConfigText(path), path, options);
}

/**
 * The text of the config file at `path`.
 * @throws {ConfigError} naming the path when it cannot be read
 */
export async function readConfigText(path: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    const reason = err instanceof Deno.errors.NotFound
      ? "file not found"
      : err instanceof Error
      ? err.message
      : String(err);
    throw new ConfigError(path, `cannot read config file: ${reason}`, { cause: err });
  }
  return text;
}

/**
 * Parses and validates YAML config text. `source` (a file name) prefixes syntax-error locations
 * and names the cluster when `name` is not set.
 * @throws {ConfigError} listing every problem, one `path: problem` per line; a YAML syntax error
 *   is reported as `source:line:column: YAML syntax error: …`
 */
export function parseConfig(
  text: string,
  source?: string,
  options: ParseConfigOptions = {},
): ClusterConfig {
  return parseConfigObject(parseConfigYaml(text, source), source, options);
}

/**
 * YAML config text as a plain tree (snake_case keys), not yet validated.
 * @throws {ConfigError} on YAML syntax errors (`source:line:column: YAML syntax error: …`)
 */
export function parseConfigYaml(text: string, source?: string): unknown {
  const lineCounter = new LineCounter();
  const issues = new Issues();
  const where = source ?? "<config>";
  // Not wrapped: a missing --allow-env (LOG_TOKENS, LOG_STREAM) must surface as itself.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  for (const error of doc.errors) {
    const pos = lineCounter.linePos(error.pos[0]);
    issues.add(
      `${where}:${pos.line}:${pos.col}`,
      `YAML syntax error: ${error.message.split("\n")[0]}`,
    );
  }
  visit(doc, {
    Pair(_, pair) {
      if (!isCollection(pair.key)) return;
      const pos = lineCounter.linePos(pair.key.range?.[0] ?? 0);
      issues.add(
        `${where}:${pos.line}:${pos.col}`,
        "YAML error: mapping keys must be plain scalars, not lists or mappings",
      );
    },
  });
  issues.throwIfAny(source);
  let tree: unknown;
  try {
    tree = doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    // e.g. "Excessive alias count" (a YAML bomb) or an alias cycle.
    if (err instanceof Deno.errors.NotCapable || err instanceof Deno.errors.PermissionDenied) {
      throw err;
    }
    const message = err instanceof Error ? err.message : String(err);
    throw new ConfigError(where, `YAML error: ${message}`, { cause: err });
  }
  return tree;
}

/**
 * Validates an already-parsed config tree (YAML or JSON data with the same snake_case keys).
 * @throws {ConfigError} listing every problem, one `path: problem` per line
 */
export function parseConfigObject(
  tree: unknown,
  source?: string,
  options: ParseConfigOptions = {},
): ClusterConfig {
  const reader = new YamlReader();
  const { config, present } = parseTree(tree, reader);
  validateConfig(config, reader);
  reader.issues.throwIfAny(source);
  return applyDefaults(config, { present, machine: options.machine, source });
}

/**
 * The cluster's label prefix, resolved once when the config was loaded (applyDefaults sets
 * `platform.label_prefix`, "iris" unless given). Every consumer reads it here; none has its own
 * fallback.
 * @throws {ConfigError} at `platform.label_prefix` for a config that did not go through the loader
 */
export function labelPrefixOf(config: ClusterConfig): string {
  const prefix = config.platform?.labelPrefix;
  if (!prefix) {
    throw new ConfigError(
      "platform.label_prefix",
      "not resolved: load the config with loadConfig/parseConfig (or applyDefaults) first",
    );
  }
  return prefix;
}

/**
 * The mode of a cluster, from its controller kind.
 * @throws {ConfigError} at `controller` when no controller kind is set
 */
export function configMode(config: ClusterConfig): ConfigMode {
  const kind = config.controller?.kind.case;
  if (kind === undefined) {
    throw new ConfigError(
      "controller",
      `must set exactly one of ${CONTROLLER_KINDS.join(", ")} (got none)`,
    );
  }
  return kind;
}
