// Every CLI command, one line each. A command file exports register(program).
import type { Command } from '@commander-js/extra-typings';
import { register as compare } from './compare.js';
import { register as convert } from './convert.js';
import { register as info } from './info.js';
import { register as map } from './map.js';
import { register as serve } from './serve.js';

export const COMMANDS: Array<(program: Command) => void> = [
  info,
  serve,
  map,
  compare,
  convert,
];
