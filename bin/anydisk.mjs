#!/usr/bin/env node
// The CLI from the compiled modules (dist/src). bin/anydisk prefers the bundle
// (dist/bundle/anydisk.cjs) when the build made one; both run start() (src/frontends/cli/start.ts).
const { start } = await import('../dist/src/frontends/cli/start.js');
await start(process.argv);
