// Loaded with `node --import` into a real `switchyard serve` by serve-process-errors.test.ts: on
// SIGUSR2 it makes the fault SWITCHYARD_TEST_FAULT names happen inside that process, as a bug would:
// `reject` leaves a promise rejection nothing handles, `throw` throws from a timer callback.
// Without the variable (an engine child started through the same node options) it does nothing.
const fault = process.env.SWITCHYARD_TEST_FAULT;
if (fault === 'reject' || fault === 'throw') {
  process.on('SIGUSR2', () => {
    if (fault === 'reject') void Promise.reject(new Error('test fault: a rejection nothing handles'));
    else
      setImmediate(() => {
        throw new Error('test fault: an exception nothing catches');
      });
  });
}
