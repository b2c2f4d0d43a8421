/** Newest mtime (ms) of the non-test .ts files under `dir`; 0 when there is no such directory. */
export function newestSourceMs(dir: string): number;
/** The build stamp of the checkout at `root` (dist/.built). */
export function distStamp(root: string): string;
/** Why `root`'s dist/ cannot be run, or undefined when it is current. */
export function distProblem(
  root: string,
  stampMs?: number,
): 'dist/ is not built' | 'dist/ is older than src/' | undefined;
