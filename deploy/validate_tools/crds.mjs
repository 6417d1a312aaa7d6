// Validates custom resources, which the Kubernetes schemas do not cover, with the
// @kubernetes-models packages (one model per kind, named in kube.CRD_KINDS), two ways:
//  1. the JSON schema compiled into the model (`.validate()`: types, required fields, enums,
//     patterns such as durations), which lets unknown fields through;
//  2. the package's TypeScript types, checked with `tsc --noEmit --strict`: every object is
//     written as an object literal typed with the model's interface (I<Kind>), and
//     TypeScript's excess-property check rejects any field the CRD does not have. That check
//     does not reach into arrays whose type is an intersection (Istio's AuthorizationPolicy
//     rules are), so every object inside an array is also written on its own, typed with the
//     element type at its path (NonNullable<T["spec"]>["rules"][number], ...).
//
// Usage: node crds.mjs NODE_DIR INPUT.json
//   NODE_DIR   where package.json's dependencies are installed (has node_modules/)
//   INPUT.json [{"model": "@kubernetes-models/<package>/<group>/<version>/<Kind>", "doc": {...}}, ...]
// Prints a JSON array of problems, [{"index": N, "problem": "..."}] (index: the object's place
// in INPUT.json; -1 for a problem of no object); exits 1 if there is any.

import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const [nodeDir, input] = process.argv.slice(2);
const items = JSON.parse(readFileSync(input, "utf8"));
const problems = [];
const kindOf = (model) => model.split("/").pop();

// 1. The JSON schema of each object's model.
for (const [index, { model, doc }] of items.entries()) {
  try {
    const mod = await import(pathToFileURL(join(nodeDir, "node_modules", `${model}.js`)).href);
    new mod[kindOf(model)](doc).validate();
  } catch (e) {
    problems.push({ index, problem: `CRD schema: ${String(e.message).split("\n").join("; ")}` });
  }
}

// 2. The types. The typed copy lives under NODE_DIR so that module resolution finds
// node_modules; "// object N" above each literal maps tsc's line numbers back to the object.
const dir = join(nodeDir, "crds-check");
mkdirSync(dir, { recursive: true });
const models = [...new Set(items.map((i) => i.model))];
const lines = models.map((m, n) => `import type { I${kindOf(m)} as T${n} } from "${m}";`);

// The objects inside arrays under value (whose type is typeExpr), each as its own literal.
function elements(value, typeExpr, name, out) {
  if (Array.isArray(value)) {
    value.forEach((v, i) => {
      const t = `NonNullable<${typeExpr}>[number]`;
      if (v && typeof v === "object" && !Array.isArray(v)) {
        out.push(`export const ${name}_${i}: ${t} = ${JSON.stringify(v)};`);
      }
      elements(v, t, `${name}_${i}`, out);
    });
  } else if (value && typeof value === "object") {
    Object.entries(value).forEach(([k, v], n) => {
      elements(v, `NonNullable<${typeExpr}>[${JSON.stringify(k)}]`, `${name}_${n}`, out);
    });
  }
}

items.forEach(({ model, doc }, index) => {
  const type = `T${models.indexOf(model)}`;
  lines.push(`// object ${index}`);
  lines.push(`export const doc${index}: ${type} = ${JSON.stringify(doc, null, 2)};`);
  elements(doc, type, `doc${index}`, lines);
});
writeFileSync(join(dir, "crds.ts"), lines.join("\n") + "\n");
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
    files: ["crds.ts"],
  }),
);
try {
  execFileSync(join(nodeDir, "node_modules/.bin/tsc"), ["-p", join(dir, "tsconfig.json")], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  });
} catch (e) {
  const out = `${e.stdout || ""}${e.stderr || ""}`.trim();
  const text = readFileSync(join(dir, "crds.ts"), "utf8").split("\n");
  for (const line of out.split("\n")) {
    const m = line.match(/crds\.ts\((\d+),\d+\): (.*)$/);
    if (!m) {
      if (line.trim()) problems.push({ index: -1, problem: `tsc: ${line.trim()}` });
      continue;
    }
    let n = Number(m[1]) - 1;
    while (n > 0 && !text[n].startsWith("// object ")) n--;
    const index = text[n].startsWith("// object ") ? Number(text[n].slice(10)) : -1;
    problems.push({ index, problem: `CRD types: ${m[2]}` });
  }
}

// An object and the array elements written out from it can fail alike: report each once.
const unique = [...new Map(problems.map((p) => [`${p.index} ${p.problem}`, p])).values()];
console.log(JSON.stringify(unique));
process.exit(unique.length ? 1 : 0);
