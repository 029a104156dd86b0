// Validates Kubernetes manifests against Istio's CRD schemas, as shipped by the npm package
// @kubernetes-models/istio (generated from Istio 1.29.2's crd-all.gen.yaml; each model's
// validate() runs the CRD's openAPIV3Schema compiled with ajv: types, enums, patterns, required
// fields). It does not run the CRDs' CEL rules (x-kubernetes-validations), and, like the API
// server's pruning, it does not reject unknown fields.
//
// usage: node deploy/validate/validate.mjs FILE.yaml...
// Prints `ok FILE KIND/NAME` or `invalid FILE KIND/NAME: REASON` per document; exits 1 if any
// document is invalid or of a kind it does not know. The packages are looked up in
// $WASMGATE_NODE_MODULES, by default .tools/node-validate/node_modules (where `cargo xtask test`
// installs deploy/validate/package.json).

import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
const modules =
  process.env.WASMGATE_NODE_MODULES ?? join(root, ".tools", "node-validate", "node_modules");
const load = (path) => import(pathToFileURL(join(modules, path)).href);

const { parseAllDocuments } = await load("yaml/dist/index.js");
// apiVersion + kind -> the model class that validates it.
const models = {
  "extensions.istio.io/v1alpha1 WasmPlugin": (
    await load("@kubernetes-models/istio/extensions.istio.io/v1alpha1/WasmPlugin.js")
  ).WasmPlugin,
  "networking.istio.io/v1alpha3 EnvoyFilter": (
    await load("@kubernetes-models/istio/networking.istio.io/v1alpha3/EnvoyFilter.js")
  ).EnvoyFilter,
};

let failed = false;
for (const file of process.argv.slice(2)) {
  const documents = parseAllDocuments(readFileSync(file, "utf8"));
  for (const document of documents) {
    if (document.errors.length > 0) {
      console.log(`invalid ${file}: YAML: ${document.errors.map((e) => e.message).join("; ")}`);
      failed = true;
      continue;
    }
    const object = document.toJS();
    if (object === null) continue;
    const what = `${object.kind}/${object.metadata?.name}`;
    const Model = models[`${object.apiVersion} ${object.kind}`];
    if (Model === undefined) {
      console.log(`invalid ${file} ${what}: no schema for ${object.apiVersion} ${object.kind}`);
      failed = true;
      continue;
    }
    try {
      new Model(object).validate();
      console.log(`ok ${file} ${what}`);
    } catch (error) {
      console.log(`invalid ${file} ${what}: ${error.message}`);
      failed = true;
    }
  }
}
process.exit(failed ? 1 : 0);
