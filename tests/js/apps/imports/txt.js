// Imports a text file: must fail at boot without showing the file.
import "./data.txt";
export default { fetch: () => new Response("loaded") };
