// Handlers that throw values other than Errors, or run out of memory in places other than
// the handler's own frame. Run with a small --memory-limit (the tests use 16 MB).
let hog = [];
const fill = (into) => {
  // Small objects fill the heap to the last byte: QuickJS then cannot even allocate the
  // "out of memory" error and throws null instead.
  for (;;) into.push({ n: into.length });
};

export default {
  async fetch(request) {
    const path = "/" + new URL(request.url).pathname.split("/").pop();
    switch (path) {
      case "/null":
        throw null;
      case "/undefined":
        throw undefined;
      case "/number":
        throw 42;
      case "/string":
        throw "str";
      case "/object":
        throw {};
      case "/bare-object":
        throw Object.create(null);
      case "/multiline":
        throw "first line\nsecond line";
      case "/error":
        throw new Error("boom");
      case "/small-oom":
        fill([]);
        break;
      case "/global-oom":
        // The heap stays full while the error is reported.
        fill(hog);
        break;
      case "/reaction-oom":
        return Promise.resolve().then(() => fill(hog));
      case "/timer-oom":
        // Exceptions in callbacks are only reported, but running out of memory still ends
        // the request.
        return new Promise(() => setTimeout(() => fill(hog), 1));
      case "/microtask-oom":
        return new Promise(() => queueMicrotask(() => fill(hog)));
      case "/job-oom": {
        // A FinalizationRegistry callback runs as a job of its own: its exception comes out
        // of the job queue, not out of the handler's promise.
        const registry = new FinalizationRegistry(() => fill(hog));
        (() => registry.register({}, "gone"))();
        return new Promise((r) => setTimeout(() => r(new Response("not reached")), 50));
      }
      case "/job-throws-null": {
        const registry = new FinalizationRegistry(() => {
          throw null;
        });
        (() => registry.register({}, "gone"))();
        return new Promise((r) => setTimeout(() => r(new Response("after the job")), 20));
      }
      default:
        return new Response("ok");
    }
  },
};
