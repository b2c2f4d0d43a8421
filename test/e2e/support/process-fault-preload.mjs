// Loaded with `node --import` into a real `switchyard serve` by serve-process-errors.test.ts: on
// SIGUSR2 it makes the fault SWITCHYARD_TEST_FAULT names happen inside that process, as a bug would:
// `reject` leaves a promise rejection nothing handles, `throw` throws from a timer callback.
// Without the variable (an engine child started through the same node options) it does nothing.
const fault = process.env.SWITCHYARD_TEST_FAULT;
/** Rejections raised so far. */
let raised = 0;
/** Rejections whose 'unhandledRejection' event has been through every listener, serve's included. */
let dispatched = 0;
if (fault === 'reject' || fault === 'throw') {
  process.on('SIGUSR2', () => {
    if (fault === 'reject') {
      // Added at the first fault, so after serve's own listener (installed at start-up): listeners
      // run in the order added, so this line comes after whatever serve did with the same event. The
      // test waits for it to know a fault was handled (stderr is a pipe, written synchronously, so
      // the order of lines holds).
      if (raised === 0)
        process.on('unhandledRejection', () => {
          dispatched += 1;
          process.stderr.write(`test fault preload: rejection ${dispatched} dispatched\n`);
        });
      raised += 1;
      void Promise.reject(new Error('test fault: a rejection nothing handles'));
    } else
      setImmediate(() => {
        throw new Error('test fault: an exception nothing catches');
      });
  });
}
