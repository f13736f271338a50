// Workers-style handler that echoes the request back as JSON:
// { method, url, headers, body }. The request header "x-echo", if present,
// is copied to the response header "x-echo".
export default {
  async fetch(request, env, ctx) {
    const payload = {
      method: request.method,
      url: request.url,
      headers: Object.fromEntries(request.headers),
      body: await request.text(),
    };
    const headers = new Headers();
    const echo = request.headers.get("x-echo");
    if (echo !== null) headers.set("x-echo", echo);
    return Response.json(payload, { status: 200, headers });
  },
};
