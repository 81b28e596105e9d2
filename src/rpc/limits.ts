/**
 * Limits both ends of the controller↔worker protocol agree on.
 * @module
 */

/**
 * Most attempts in one RunTasks: a worker refuses a larger batch whole (`attempts`), before it
 * starts any; the controller splits its batches at this size.
 */
export const MAX_RUN_TASKS_ATTEMPTS = 1024;
