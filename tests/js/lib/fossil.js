'use strict';
// centrifuge-js's own fossil decoder (src/fossil.ts), taken from the installed npm build so the
// tests check chorus' deltas against exactly the code the SDK runs. The package does not export
// it, so its source (from `const zValue` to the end of `function applyDelta`) is cut out of
// build/index.js and evaluated on its own; a change in the build's layout fails loudly here.
const fs = require('node:fs');
const path = require('node:path');

function loadApplyDelta() {
  const file = path.join(path.dirname(require.resolve('centrifuge')), 'index.js');
  const src = fs.readFileSync(file, 'utf8');
  const start = src.indexOf('const zValue = [');
  const fn = src.indexOf('\nfunction applyDelta(', start);
  const end = src.indexOf('\n}\n', fn);
  if (start < 0 || fn < 0 || end < 0) {
    throw new Error(`fossil decoder not found in ${file}`);
  }
  // eslint-disable-next-line no-new-func
  return new Function(`${src.slice(start, end + 2)}\nreturn applyDelta;`)();
}

const applyDelta = loadApplyDelta();

module.exports = { applyDelta };
