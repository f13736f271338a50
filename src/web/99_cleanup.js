// Runs last: hides the cross-file registry created by 00_base.js. Every script captured
// its own reference at load time, so nothing needs the global name any more.
(() => {
  "use strict";
  delete globalThis.__kvmjsInternal;
})();
