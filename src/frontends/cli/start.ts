// What the launcher runs: bin/anydisk.mjs (the compiled modules) or dist/bundle/anydisk.cjs (the
// same code bundled into one file by scripts/bundle.mjs, which spares node resolving and loading
// some forty modules at every start). A background mount starts its daemon before the CLI is
// loaded (the waiting parent stays light); everything else runs the CLI.

export async function start(argv: string[]): Promise<void> {
  // libuv's thread pool carries file reads and writes and the native decoders: 4 threads (the
  // default) leave a convert's writes queued behind its reads. Set before the pool starts.
  process.env.UV_THREADPOOL_SIZE ??= '12';
  const args = argv.slice(2);
  try {
    const launch = await import('./launch.js');
    if (launch.wantsBackgroundMount(args)) {
      process.exitCode = await launch.runBackgroundMount(argv[1]!, args);
      return;
    }
    const { main } = await import('./main.js');
    await main(argv);
  } catch (err) {
    console.error(`anydisk: ${(err as Error)?.message ?? err}`);
    process.exit(2);
  }
}
