// Web API conformance checks for src/web/*.js, one module per area under webapi/. Runs in
// the QuickJS guest (run_webapi.js) and under Node (node_harness.mjs).
import { tests as core } from "./webapi/core.js";
import { tests as fetchTests } from "./webapi/fetch.js";
import { tests as formData } from "./webapi/formdata.js";
import { tests as globals } from "./webapi/globals.js";
import { tests as intl } from "./webapi/intl.js";
import { tests as subtle } from "./webapi/subtle.js";
import { tests as streams } from "./webapi/streams.js";

export const tests = [...core, ...fetchTests, ...formData, ...globals, ...streams, ...subtle, ...intl];
