// Misbehaving handlers, chosen by path.
export default {
  async fetch(request) {
    // The last path segment picks the case, so the app works under any route prefix.
    const path = "/" + new URL(request.url).pathname.split("/").pop();
    // Every request (the warm-up's too) leaves a mark: /perf-count sees its own only.
    performance.mark("request");
    switch (path) {
      case "/throw":
        throw new Error("boom");
      case "/never":
        return new Promise(() => {});
      case "/loop":
        for (;;) {}
      case "/bomb": {
        const hog = [];
        for (;;) hog.push(new Array(100000).fill(1.5));
      }
      case "/not-a-response":
        return { status: 200 };
      case "/timer":
        return new Promise((r) => setTimeout(() => r(new Response("timer fired")), 20));
      case "/wait-until": {
        let done = false;
        const ctx = arguments[2];
        ctx.waitUntil(new Promise((r) => setTimeout(() => { done = true; console.log("waitUntil finished"); r(); }, 10)));
        return new Response(`done before respond: ${done}`);
      }
      case "/wait-until-bad-then": {
        // A promise whose own `then` throws: waitUntil must neither throw nor wait forever.
        const p = Promise.resolve();
        p.then = () => {
          throw new Error("hostile then");
        };
        arguments[2].waitUntil(p);
        return new Response("bad then");
      }
      case "/wait-until-slow": {
        // Background work of `ms` ms (default: forever) after an immediate response.
        const ms = new URL(request.url).searchParams.get("ms");
        arguments[2].waitUntil(ms === null ? new Promise(() => {}) : new Promise((r) => setTimeout(() => {
          console.log("background work done");
          r();
        }, Number(ms))));
        return new Response("responded first");
      }
      case "/sleep":
        // Holds a VM for 300 ms without using CPU: for concurrency and drain tests.
        return new Promise((r) => setTimeout(() => r(new Response("slept")), 300));
      case "/framing":
        // A guest trying to set framing headers: the server must ignore them.
        return new Response("four", { headers: { "content-length": "1000", "connection": "close", "x-kept": "yes" } });
      case "/random":
        return Response.json({ r: Math.random(), u: crypto.randomUUID() });
      // The lazily evaluated prelude groups (src/engine/lazy.rs), first reached in
      // different ways: each answer must be the same.
      case "/lazy-intl-global":
        return new Response([typeof Intl, new Intl.NumberFormat("en-US").format(1234.5), String(new Date(0)), "a".localeCompare("B")].join("|"));
      case "/lazy-date-method":
        return new Response([String(new Date(0)) && typeof Intl, (1234.5).toLocaleString("en-US"), String(new Date(0)), "a".localeCompare("B")].join("|"));
      case "/perf-count":
        return new Response(String(performance.getEntriesByName("request").length));
      case "/lazy-app-method": {
        // An app's own replacement survives the group's loading.
        String.prototype.localeCompare = () => 42;
        return new Response(["a".localeCompare("b"), typeof Intl, "a".localeCompare("b")].join("|"));
      }
      case "/lazy-no-leak": {
        // Loading a group passes nothing through the global object.
        let caught;
        for (const k of ["__native", "__kvmjsInternal"]) {
          Object.defineProperty(globalThis, k, { get() {}, set(v) { caught = v; }, configurable: true });
        }
        return new Response([typeof Intl, typeof crypto.subtle, String(caught)].join("|"));
      }
      case "/lazy-crypto-global":
        return new Response([typeof CryptoKey, crypto.subtle instanceof SubtleCrypto, Object.prototype.toString.call(crypto.subtle)].join("|"));
      case "/lazy-crypto-subtle":
        return new Response([typeof crypto.subtle.digest, typeof SubtleCrypto, typeof CryptoKey].join("|"));
      case "/random-key": {
        // crypto.subtle key generation draws from the same per-request generator.
        const key = await crypto.subtle.generateKey({ name: "AES-GCM", length: 128 }, true, ["encrypt"]);
        const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, ["sign"]);
        const raw = new Uint8Array(await crypto.subtle.exportKey("raw", key));
        const pub = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
        return new Response([...raw, ...pub].map((b) => b.toString(16).padStart(2, "0")).join(""));
      }
      default:
        return new Response("ok");
    }
  },
};
