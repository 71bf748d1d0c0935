#!/usr/bin/env node
// A background mount starts its daemon before the CLI is loaded (the waiting parent stays light);
// everything else runs the CLI.
// libuv's thread pool carries file reads and writes and the native decoders: 4 threads (the
// default) leave a convert's writes queued behind its reads. Set before the pool starts.
process.env.UV_THREADPOOL_SIZE ??= '12';
const args = process.argv.slice(2);
const launch = await import('../dist/src/frontends/cli/launch.js').catch(() => undefined);
if (launch?.wantsBackgroundMount(args)) {
  process.exitCode = await launch.runBackgroundMount(process.argv[1], args);
} else {
  await import('../dist/src/frontends/cli/main.js')
    .then((m) => m.main(process.argv))
    .catch((err) => {
      console.error(`anydisk: ${err?.message ?? err}`);
      process.exit(2);
    });
}
