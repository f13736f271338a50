// The deno reference for tests/wpt_webapi.rs: runs the same WPT Web API files with the same
// harness (wpt_webapi_runner.js) under native deno, each file in a deno process of its own
// (a fresh global), two at a time, and prints passed / total per area as the Rust test does.
//
//   deno run --allow-read --allow-run tests/js/wpt_webapi_deno.js WPT_DIR [--out deno.json]
//       [--compare kvmjs.json] [--filter SUBSTRING]
//   (internal) ... wpt_webapi_deno.js --one WPT_DIR FILE: one file, its results as JSON
//
// --out writes every file's results (the format of the Rust test's WPT_WEBAPI_OUT);
// --compare reads such a file from the Rust test and adds kvmjs's passes and the ratio
// kvmjs/deno per area. tests/wpt-webapi-deno.sh runs it with the pinned deno.
import { area, runFile, sourcesOf } from "./wpt_webapi_runner.js";

const DEADLINE_MS = 4000;
const MARK = "--- wpt_webapi result ---";
const args = [...Deno.args];

function option(name) {
  const i = args.indexOf(name);
  if (i < 0) return null;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
}

async function one(dir, file) {
  // testharness.js listens for these too (the global is an EventTarget) and turns them into
  // a harness error; without preventDefault deno would exit on the first one.
  addEventListener("error", (e) => e.preventDefault());
  addEventListener("unhandledrejection", (e) => e.preventDefault());
  const own = Deno.readTextFileSync(`${dir}/${file}`);
  const sources = {};
  for (const p of sourcesOf(file, own)) sources[p] = Deno.readTextFileSync(`${dir}/${p}`);
  const readResource = async (path) => {
    try {
      return await Deno.readTextFile(`${dir}/${path}`);
    } catch {
      return null;
    }
  };
  const res = await runFile({ file, sources, readResource, deadlineMs: DEADLINE_MS });
  // The tests' console output goes to stdout too: the result is the line after MARK.
  await Deno.stdout.write(new TextEncoder().encode(`\n${MARK}\n${JSON.stringify(res)}\n`));
  Deno.exit(0);
}

function testFiles(dir, sub = "") {
  const out = [];
  for (const e of Deno.readDirSync(`${dir}/${sub}`)) {
    const p = sub ? `${sub}/${e.name}` : e.name;
    if (e.isDirectory) out.push(...testFiles(dir, p));
    else if (p.endsWith(".any.js") && !p.startsWith("resources/") && !p.startsWith("common/")) out.push(p);
  }
  return out;
}

async function runChild(dir, file) {
  const here = new URL(".", import.meta.url).pathname;
  const cmd = new Deno.Command(Deno.execPath(), {
    args: [
      "run", "--no-config", "--no-lock", "--no-remote", `--allow-read=${dir},${here}`,
      new URL(import.meta.url).pathname, "--one", dir, file,
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(2 * DEADLINE_MS + 10000),
  });
  try {
    const out = await cmd.output();
    const text = new TextDecoder().decode(out.stdout);
    try {
      return JSON.parse(text.slice(text.lastIndexOf(`\n${MARK}\n`) + MARK.length + 2));
    } catch {
      const err = new TextDecoder().decode(out.stderr).split("\n").find((l) => l.trim()) ?? "";
      return { file, harness: { status: "ERROR", message: `deno exited ${out.code}: ${err}` }, tests: [] };
    }
  } catch (e) {
    return { file, harness: { status: "ERROR", message: `deno run failed: ${e}` }, tests: [] };
  }
}

function count(results) {
  const areas = new Map();
  for (const r of results) {
    const a = area(r.file);
    if (!areas.has(a)) areas.set(a, { passed: 0, total: 0, server: 0, harnessErrors: 0 });
    const c = areas.get(a);
    if (r.harness.status !== "OK") c.harnessErrors++;
    for (const t of r.tests) {
      if (t.status === "NEEDS_SERVER") c.server++;
      else {
        c.total++;
        if (t.status === "PASS") c.passed++;
      }
    }
  }
  return new Map([...areas].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

const pct = (a, b) => (b ? ((100 * a) / b).toFixed(1) : "-");

async function all(dir) {
  const out = option("--out");
  const compare = option("--compare");
  const filter = option("--filter");
  let files = testFiles(dir).sort();
  if (filter) files = files.filter((f) => f.includes(filter));
  const results = new Array(files.length);
  let next = 0;
  const t0 = Date.now();
  const worker = async () => {
    while (next < files.length) {
      const i = next++;
      results[i] = await runChild(dir, files[i]);
    }
  };
  await Promise.all([worker(), worker()]);
  if (out) Deno.writeTextFileSync(out, JSON.stringify(results, null, 2));
  const deno = count(results);
  const kvmjs = compare ? count(JSON.parse(Deno.readTextFileSync(compare))) : null;
  console.log(`WPT Web API on deno ${Deno.version.deno} (passed / total subtests; not counted: need the WPT server):`);
  const tot = { passed: 0, total: 0, server: 0, harnessErrors: 0 };
  const ktot = { passed: 0, total: 0 };
  for (const [a, c] of deno) {
    for (const k in tot) tot[k] += c[k];
    let line = `  ${a.padEnd(32)} ${String(c.passed).padStart(5)} / ${String(c.total).padStart(5)}  ${pct(c.passed, c.total).padStart(5)}%  harness errors ${c.harnessErrors}  server ${c.server}`;
    if (kvmjs) {
      const k = kvmjs.get(a) ?? { passed: 0, total: 0 };
      ktot.passed += k.passed;
      ktot.total += k.total;
      line += `  | kvmjs ${k.passed} = ${pct(k.passed, c.passed)}% of deno`;
    }
    console.log(line);
  }
  let line = `  ${"total".padEnd(32)} ${String(tot.passed).padStart(5)} / ${String(tot.total).padStart(5)}  ${pct(tot.passed, tot.total).padStart(5)}%  harness errors ${tot.harnessErrors}  server ${tot.server}`;
  if (kvmjs) line += `  | kvmjs ${ktot.passed} = ${pct(ktot.passed, tot.passed)}% of deno`;
  console.log(`${line}  (${files.length} files, ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}

if (args[0] === "--one") await one(args[1], args[2]);
else if (args.length >= 1) await all(args.shift());
else {
  console.error("usage: wpt_webapi_deno.js WPT_DIR [--out FILE] [--compare KVMJS.json] [--filter S]");
  Deno.exit(2);
}
