import data from "./bad.json";
export default { fetch: () => new Response(JSON.stringify(data)) };
