'use strict';
// Debian's /usr/bin/chromium (or $CHROMIUM_PATH) driven by playwright-core from tests/js,
// with the launch flags that work on our machines (docs: ../shared/docs/tooling.md).
// playwright gives every launch a fresh temporary --user-data-dir of its own.
const path = require('node:path');
const { createRequire } = require('node:module');

const jsRequire = createRequire(path.join(__dirname, '..', '..', 'js', 'package.json'));
const { chromium } = jsRequire('playwright-core');

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

module.exports = { launchChromium };
