// Randomness drawn outside any handler: a timer set at load falls due after the VM's
// start-up window, so it is still pending in the snapshot and fires at the start of every
// request (before the request's handler). The warm-up's `GET /` draws too, so the
// snapshot holds whatever the adapter's generator had left.
let early = null;
setTimeout(() => {
  early = [Math.random(), crypto.randomUUID()];
}, 3000);
export default {
  fetch() {
    return Response.json({ early, late: Math.random() });
  },
};
