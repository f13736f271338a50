// Deno Deploy style handler registered through Deno.serve().
// Response body: "Hello from Deno.serve: <pathname>\n".
Deno.serve((req) => {
  const { pathname } = new URL(req.url);
  return new Response(`Hello from Deno.serve: ${pathname}\n`, {
    headers: { "content-type": "text/plain;charset=UTF-8" },
  });
});
