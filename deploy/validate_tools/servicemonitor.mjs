// Validates prometheus-operator ServiceMonitor objects, which the Kubernetes schemas do not
// cover, two ways:
//  1. the JSON schema of the ServiceMonitor CRD compiled into @kubernetes-models/prometheus-operator
//     (`.validate()`: types, required fields, patterns such as durations), which lets unknown
//     fields through;
//  2. the package's TypeScript types, checked with `tsc --noEmit --strict`: every object is
//     written as an object literal typed IServiceMonitor, and TypeScript's excess-property check
//     rejects any field the CRD does not have.
//
// Usage: node servicemonitor.mjs NODE_DIR INPUT.json
//   NODE_DIR   where package.json's dependencies are installed (has node_modules/)
//   INPUT.json [{"where": "...", "doc": {...}}, ...]
// Prints one line per object; exits 1 if any is invalid.

import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [nodeDir, input] = process.argv.slice(2);
const items = JSON.parse(readFileSync(input, "utf8"));
const modelPath = join(
  nodeDir,
  "node_modules/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js",
);
const { ServiceMonitor } = await import(pathToFileURL(modelPath).href);

let failed = 0;
for (const { where, doc } of items) {
  try {
    new ServiceMonitor(doc).validate();
  } catch (e) {
    failed++;
    console.log(`FAIL ${where}: CRD schema: ${String(e.message).split("\n").join("; ")}`);
  }
}

// The typed copy lives under NODE_DIR so that module resolution finds node_modules.
const dir = join(nodeDir, "servicemonitor-check");
mkdirSync(dir, { recursive: true });
const lines = [
  'import type { IServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";',
];
items.forEach(({ where, doc }, i) => {
  lines.push(`// ${where.replace(/\n/g, " ")}`);
  lines.push(`export const doc${i}: IServiceMonitor = ${JSON.stringify(doc, null, 2)};`);
});
writeFileSync(join(dir, "servicemonitors.ts"), lines.join("\n") + "\n");
writeFileSync(
  join(dir, "tsconfig.json"),
  JSON.stringify({
    compilerOptions: {
      strict: true,
      noEmit: true,
      module: "nodenext",
      moduleResolution: "nodenext",
      target: "es2022",
      skipLibCheck: true,
      types: [],
    },
    files: ["servicemonitors.ts"],
  }),
);
try {
  execFileSync(join(nodeDir, "node_modules/.bin/tsc"), ["-p", join(dir, "tsconfig.json")], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
} catch (e) {
  failed++;
  const out = `${e.stdout || ""}${e.stderr || ""}`.trim();
  // Map "servicemonitors.ts(LINE,COL): error ..." back to the object it belongs to.
  const text = readFileSync(join(dir, "servicemonitors.ts"), "utf8").split("\n");
  for (const line of out.split("\n")) {
    const m = line.match(/servicemonitors\.ts\((\d+),\d+\): (.*)$/);
    if (!m) {
      if (line.trim()) console.log(`FAIL tsc: ${line.trim()}`);
      continue;
    }
    let n = Number(m[1]) - 1;
    while (n > 0 && !text[n].startsWith("// ")) n--;
    console.log(`FAIL ${text[n].slice(3)}: CRD types: ${m[2]}`);
  }
}

if (!failed) console.log(`ok: ${items.length} ServiceMonitor(s) valid (CRD schema and types)`);
process.exit(failed ? 1 : 0);
