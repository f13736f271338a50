import { key } from "./broken.js";
export default { fetch: () => new Response(key) };
