// .mjs and .json imports load; other files fail, also when imported at request time.
import { greeting } from "./lib.mjs";
import data from "./data.json";

export default {
  async fetch(request) {
    const path = new URL(request.url).pathname;
    if (path === "/dynamic-env") return new Response(String(await import("./.env")));
    if (path === "/dynamic-json") {
      const again = await import("./data.json");
      return new Response(String(again.default === data));
    }
    const own = Object.keys(data).join(",");
    return new Response(`${greeting} ${data.answer} ${own} ${data.polluted} ${JSON.stringify(data.list)}`);
  },
};
