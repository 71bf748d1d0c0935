// The anydisk command line. Each command lives in its own file (see commands.ts).
import { Command } from '@commander-js/extra-typings';
import { registerCommands } from './commands.js';
import { reportError, setDebug } from './common.js';
import { registerRemoteSchemes, setRemoteDefaults } from '../../sources/remote.js';

registerRemoteSchemes();

export async function main(argv: string[]): Promise<void> {
  const program = new Command()
    .name('anydisk')
    .description('make any virtual disk image usable by any emulator, without copying it')
    .version('0.1.0')
    .option('--debug', 'print stack traces and protocol details')
    .option('--http-cache <dir>', 'keep fetched blocks of remote images in DIR (shared, bounded; env ANYDISK_HTTP_CACHE)')
    .showHelpAfterError()
    .hook('preAction', (cmd) => {
      const o = cmd.opts() as { debug?: boolean; httpCache?: string };
      if (o.debug) setDebug(true);
      if (o.httpCache) setRemoteDefaults({ diskCacheDir: o.httpCache });
    });
  program.exitOverride();
  await registerCommands(program, argv.slice(2));
  try {
    await program.parseAsync(argv);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (typeof code === 'string' && code.startsWith('commander.')) {
      const exitCode = (err as { exitCode?: number }).exitCode ?? 2;
      process.exit(code === 'commander.helpDisplayed' || code === 'commander.version' ? 0 : exitCode === 0 ? 0 : 2);
    }
    process.exitCode = reportError(err);
  }
}
