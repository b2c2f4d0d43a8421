/** Defaults of the llama engine, apart from its backend so the CLI can show them without loading node-llama-cpp. */

/** Sequences (parallel generations) by default. */
export const SEQUENCES_DEFAULT = 4;
/** Decode threads by default: on a small CPU one thread beats two that fight over the cores. */
export const THREADS_DEFAULT = 1;
