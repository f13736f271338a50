// Workers-style handler that reports the configured environment.
// Response body: JSON {"greeting": env.GREETING or null, "keys": sorted env names}.
export default {
  async fetch(request, env, ctx) {
    env = env ?? {};
    return Response.json({
      greeting: env.GREETING ?? null,
      keys: Object.keys(env).sort(),
    });
  },
};
