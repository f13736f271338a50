// Imports a dotenv file: must fail at boot without showing the file.
import * as env from "./.env";
export default { fetch: () => new Response(Object.keys(env).join()) };
