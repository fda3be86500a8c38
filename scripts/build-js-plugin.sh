#!/usr/bin/env bash
# Builds the JavaScript example plugin (plugins/js/traceparent) into a component with componentize-js
# (from npm, pinned, installed under ~/.cache/sparkwasm/js), called directly from Node. Prints the
# .wasm path. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
JS="${SPARKWASM_JS_TOOLS:-$HOME/.cache/sparkwasm/js}"
VERSION=0.23.0
if [ ! -f "$JS/node_modules/@bytecodealliance/componentize-js/package.json" ] \
  || ! grep -q "\"version\": \"$VERSION\"" "$JS/node_modules/@bytecodealliance/componentize-js/package.json"; then
  mkdir -p "$JS"
  [ -f "$JS/package.json" ] || echo '{"private": true}' > "$JS/package.json"
  (cd "$JS" && npm install --silent --no-audit --no-fund "@bytecodealliance/componentize-js@$VERSION" >&2)
fi
out="$(realpath -m "${CARGO_TARGET_DIR:-target}")/plugins/js"
mkdir -p "$out"
wasm="$out/traceparent.wasm"
src=plugins/js/traceparent/plugin.js
if [ ! -f "$wasm" ] || [ "$src" -nt "$wasm" ] || [ wit/plugin.wit -nt "$wasm" ]; then
  NODE_PATH="$JS/node_modules" node --input-type=module - "$src" "$wasm" "$JS" <<'JS'
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
const [src, out, tools] = process.argv.slice(2);
const { componentize } = await import(
  pathToFileURL(resolve(tools, 'node_modules/@bytecodealliance/componentize-js/src/componentize.js'))
);
// No wasi:http (`fetch`): a plugin reaches the network only through the chain.
const { component } = await componentize({
  sourcePath: resolve(src),
  witPath: resolve('wit'),
  worldName: 'middleware',
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(out, component);
JS
fi
echo "$wasm"
