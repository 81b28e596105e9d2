/** The Iris version, printed by `iris --version` and reported by GetControllerStatus. */
export const VERSION = "0.1.0";
