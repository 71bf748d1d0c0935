// Every CLI command, one line each. A command file exports register(program).
import type { Command } from '@commander-js/extra-typings';
import { register as check } from './check.js';
import { register as commit } from './commit.js';
import { register as create } from './create.js';
import { register as info } from './info.js';
import { register as mount } from './mount.js';
import { register as partitions } from './partitions.js';
import { register as umount } from './umount.js';

export const COMMANDS: Array<(program: Command) => void> = [
  check,
  commit,
  create,
  info,
  mount,
  partitions,
  umount,
];
