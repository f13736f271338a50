// Imports a file without an extension: must fail at boot without showing the file.
import data from "./noext";
export default { fetch: () => new Response(String(data)) };
