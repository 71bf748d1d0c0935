// Every CLI command, one line each. A command file exports register(program); it is imported only
// when its command is run (or for the full help), so starting one command never loads the others.
import type { Command } from '@commander-js/extra-typings';

export interface CommandEntry {
  readonly name: string;
  readonly aliases?: readonly string[];
  load(): Promise<{ register(program: Command): void }>;
}

export const COMMANDS: readonly CommandEntry[] = [
  { name: 'check', load: () => import('./check.js') },
  { name: 'commit', load: () => import('./commit.js') },
  { name: 'create', load: () => import('./create.js') },
  { name: 'info', load: () => import('./info.js') },
  { name: 'mount', load: () => import('./mount.js') },
  { name: 'partitions', load: () => import('./partitions.js') },
  { name: 'umount', aliases: ['unmount'], load: () => import('./umount.js') },
  { name: 'serve', load: () => import('./serve.js') },
  { name: 'map', load: () => import('./map.js') },
  { name: 'compare', load: () => import('./compare.js') },
  { name: 'convert', load: () => import('./convert.js') },
  { name: 'verify', load: () => import('./verify.js') },
];

/** Global options that take a value (they come before the command name). */
const VALUE_OPTIONS = new Set(['--http-cache']);

/**
 * The command argv names (argv without node and script), or undefined when there is none or it is
 * not a command (help, --version, a typo: then every command is registered, for help and hints).
 */
export function commandFor(args: readonly string[]): CommandEntry | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') return undefined;
    if (a.startsWith('-')) {
      if (VALUE_OPTIONS.has(a)) i++;
      continue;
    }
    return COMMANDS.find((c) => c.name === a || c.aliases?.includes(a));
  }
  return undefined;
}

/** Register the command argv asks for, or all of them. */
export async function registerCommands(program: Command, args: readonly string[]): Promise<void> {
  const one = commandFor(args);
  if (!one && args.some((a) => a === '-V' || a === '--version')) return;
  const mods = await Promise.all((one ? [one] : COMMANDS).map((c) => c.load()));
  for (const m of mods) m.register(program);
}
