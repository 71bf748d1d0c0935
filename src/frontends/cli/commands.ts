// Every CLI command, one line each. A command file exports register(program).
import type { Command } from '@commander-js/extra-typings';
import { register as check } from './check.js';
import { register as commit } from './commit.js';
import { register as create } from './create.js';
import { register as compare } from './compare.js';
import { register as convert } from './convert.js';
import { register as info } from './info.js';
import { register as map } from './map.js';
import { register as mount } from './mount.js';
import { register as partitions } from './partitions.js';
import { register as serve } from './serve.js';
import { register as umount } from './umount.js';
import { register as verify } from './verify.js';

export const COMMANDS: Array<(program: Command) => void> = [
  check,
  commit,
  create,
  info,
  mount,
  partitions,
  umount,
  serve,
  map,
  compare,
  convert,
  verify,
];
