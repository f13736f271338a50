// Runs the WPT URL test data (urltestdata.json, setters_tests.json, toascii.json) against
// this runtime's URL class and reports every failure. The data directory comes from env.
const fields = ["href", "protocol", "username", "password", "host", "hostname", "port", "pathname", "search", "hash"];

function runParsing(data, report) {
  for (const t of data) {
    if (typeof t === "string") continue;
    const name = `parse ${JSON.stringify(t.input)} against ${JSON.stringify(t.base)}`;
    let url = null;
    let err = null;
    try {
      url = t.base === null ? new URL(t.input) : new URL(t.input, t.base);
    } catch (e) {
      err = e;
    }
    if (t.failure) {
      let got = "";
      try {
        got = url === null ? "" : url.href;
      } catch (e) {
        got = `a broken URL object (${e})`;
      }
      report(name, url === null ? null : `expected failure, got ${got}`);
      continue;
    }
    if (url === null) {
      report(name, `threw ${err}`);
      continue;
    }
    try {
      const bad = fields.filter((f) => url[f] !== t[f]).map((f) => `${f}: ${JSON.stringify(url[f])} != ${JSON.stringify(t[f])}`);
      if ("origin" in t && url.origin !== t.origin) bad.push(`origin: ${JSON.stringify(url.origin)} != ${JSON.stringify(t.origin)}`);
      report(name, bad.length ? bad.join("; ") : null);
    } catch (e) {
      report(name, `threw ${e}`);
    }
  }
}

function runSetters(data, report) {
  for (const [setter, cases] of Object.entries(data)) {
    if (setter === "comment") continue;
    for (const t of cases) {
      const name = `set ${setter}=${JSON.stringify(t.new_value)} on ${t.href}`;
      try {
        const url = new URL(t.href);
        url[setter] = t.new_value;
        const bad = Object.entries(t.expected).filter(([k, v]) => url[k] !== v).map(([k, v]) => `${k}: ${JSON.stringify(url[k])} != ${JSON.stringify(v)}`);
        report(name, bad.length ? bad.join("; ") : null);
      } catch (e) {
        report(name, `threw ${e}`);
      }
    }
  }
}

function runToAscii(data, report) {
  for (const t of data) {
    if (typeof t === "string") continue;
    const name = `toascii ${JSON.stringify(t.input)}`;
    let host = null;
    try {
      host = new URL(`https://${t.input}/x`).host;
    } catch {}
    if (t.output === null) report(name, host === null ? null : `expected failure, got ${host}`);
    else report(name, host === t.output ? null : `${JSON.stringify(host)} != ${JSON.stringify(t.output)}`);
  }
}

export default {
  async fetch(request, env) {
    const dir = env.WPT_URL_DIR;
    const suites = {};
    for (const [suite, file, run] of [
      ["urltestdata", "urltestdata.json", runParsing],
      ["urltestdata-javascript-only", "urltestdata-javascript-only.json", runParsing],
      ["setters", "setters_tests.json", runSetters],
      ["toascii", "toascii.json", runToAscii],
    ]) {
      const data = (await import(`${dir}/${file}`)).default;
      const r = { passed: 0, failed: 0, failures: [] };
      run(data, (name, failure) => {
        if (failure === null) r.passed++;
        else {
          r.failed++;
          r.failures.push(`${name} => ${failure}`);
        }
      });
      suites[suite] = r;
    }
    return Response.json(suites);
  },
};
