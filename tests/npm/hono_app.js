// A hono (pinned in package.json) app as people deploy it to Workers: form bodies through
// parseBody() (FormData), the etag() middleware (crypto.subtle.digest), stream() and
// streamSSE() (TransformStream, streamed to the client), Intl/localeCompare, and fetch() to
// a backend. Served by kvmjs (QuickJS) and by native deno; crates/kvmjs/tests/npm_apps.rs
// compares the responses.
import { Hono } from "hono";
import { etag } from "hono/etag";
import { stream, streamSSE } from "hono/streaming";

const app = new Hono().basePath("/hono");

app.post("/form", async (c) => {
  const body = await c.req.parseBody({ all: true });
  const out = {};
  for (const [k, v] of Object.entries(body)) {
    const one = async (x) => (x instanceof File ? { name: x.name, type: x.type, size: x.size, text: await x.text() } : x);
    out[k] = Array.isArray(v) ? await Promise.all(v.map(one)) : await one(v);
  }
  return c.json(out);
});

app.use("/etag/*", etag());
app.get("/etag/text", (c) => c.text("hello etag\n"));
app.get("/etag/json", (c) => c.json({ big: "x".repeat(5000) }));

app.get("/stream", (c) =>
  stream(c, async (s) => {
    await s.write("one\n");
    await s.sleep(150);
    await s.write(new TextEncoder().encode("two\n"));
    await s.sleep(150);
    await s.write("three\n");
  }),
);

app.get("/sse", (c) =>
  streamSSE(c, async (s) => {
    for (let i = 0; i < 3; i++) {
      await s.writeSSE({ data: `tick ${i}`, event: "tick", id: String(i) });
      await s.sleep(100);
    }
  }),
);

app.get("/intl", (c) => {
  const d = new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 6));
  return c.json({
    compare: ["a".localeCompare("B"), "B".localeCompare("a"), "a".localeCompare("a"), "résumé".localeCompare("resume")],
    sorted: ["b", "A", "a", "B", "ä", "z", "Z", "10", "9"].sort(new Intl.Collator("en").compare),
    numeric: ["10", "9", "1"].sort(new Intl.Collator("en", { numeric: true }).compare),
    number: [
      new Intl.NumberFormat("en-US").format(1234567.891),
      (0.256).toLocaleString("en-US", { style: "percent" }),
      new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" }).format(-12.5),
      new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 }).format(2.5),
      (1234.5).toLocaleString(),
    ],
    plural: [0, 1, 2, 5].map((n) => new Intl.PluralRules("en-US").select(n)),
    ordinal: [1, 2, 3, 4, 11, 22].map((n) => new Intl.PluralRules("en-US", { type: "ordinal" }).select(n)),
    date: [
      new Intl.DateTimeFormat("en-US", { dateStyle: "full", timeStyle: "long", timeZone: "UTC" }).format(d),
      d.toLocaleString("en-US", { timeZone: "UTC" }),
      d.toLocaleDateString("en-US", { timeZone: "UTC", year: "numeric", month: "long", day: "numeric" }),
      d.toString(),
    ],
    resolved: new Intl.DateTimeFormat("en-US", { timeZone: "UTC" }).resolvedOptions().locale,
  });
});

// fetch() to a backend named in the query (the test's local origin).
app.get("/proxy", async (c) => {
  const to = c.req.query("to");
  try {
    const r = await fetch(to, { method: "POST", body: "ping from hono", headers: { "x-test": "1" } });
    const text = await r.text();
    return c.json({ status: r.status, type: r.headers.get("content-type"), echo: r.headers.get("x-echo"), redirected: r.redirected, url: r.url, text });
  } catch (e) {
    return c.json({ error: e.name }, 502);
  }
});

export default app;
