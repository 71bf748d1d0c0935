import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Command } from '@commander-js/extra-typings';
import { commandFor, COMMANDS, registerCommands } from './commands.js';

test('the command named on the line is the one loaded, past global options', () => {
  assert.equal(commandFor(['convert', '-O', 'raw', 'a', 'b'])?.name, 'convert');
  assert.equal(commandFor(['--debug', 'info', 'x'])?.name, 'info');
  assert.equal(commandFor(['--http-cache', '/tmp/c', 'map', 'x'])?.name, 'map');
  assert.equal(commandFor(['unmount', 'mnt'])?.name, 'umount');
  assert.equal(commandFor(['--help']), undefined);
  assert.equal(commandFor(['help', 'convert']), undefined);
  assert.equal(commandFor(['convrt']), undefined);
  assert.equal(commandFor([]), undefined);
});

test('each entry loads the command of its name; without a command all are registered', async () => {
  const all = new Command();
  await registerCommands(all, ['--help']);
  assert.deepEqual(all.commands.map((c) => c.name()), COMMANDS.map((c) => c.name));
  for (const c of all.commands) assert.deepEqual(c.aliases(), [...(COMMANDS.find((e) => e.name === c.name())!.aliases ?? [])]);
  const one = new Command();
  await registerCommands(one, ['--debug', 'convert', '-O', 'raw', 'a', 'b']);
  assert.deepEqual(one.commands.map((c) => c.name()), ['convert']);
  const version = new Command();
  await registerCommands(version, ['--version']);
  assert.equal(version.commands.length, 0);
});
