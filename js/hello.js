// Minimal Workers-style handler: a fixed plain-text greeting.
// Response body: "Hello, World!\n" (14 bytes).
export default {
  async fetch(request, env, ctx) {
    return new Response("Hello, World!\n", {
      headers: { "content-type": "text/plain;charset=UTF-8" },
    });
  },
};
