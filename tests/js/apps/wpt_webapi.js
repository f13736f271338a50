// Runs ONE WPT Web API test file per request (tests/wpt_webapi.rs): `POST /?file=PATH`
// with a JSON body { "sources": { PATH: TEXT } } holding every file runFile needs
// (sourcesOf: testharness.js, the META scripts, the test file), since the guest can
// import modules and JSON but not read a script's text. JSON resources the test fetches
// are imported from WPT_WEBAPI_DIR. On an ephemeral VM every request starts from the
// snapshot, so each file runs in a fresh global. Answers runFile's JSON.
import { runFile } from "../wpt_webapi_runner.js";

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const file = url.searchParams.get("file");
    const deadlineMs = Number(url.searchParams.get("deadline") ?? 4000);
    const { sources } = await request.json();
    const readResource = async (path) => {
      try {
        return JSON.stringify((await import(`${env.WPT_WEBAPI_DIR}/${path}`)).default);
      } catch {
        return null;
      }
    };
    return Response.json(await runFile({ file, sources, readResource, deadlineMs }));
  },
};
