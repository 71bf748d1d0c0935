// The view registry: one line per view.
import { rawView } from './raw.js';
import type { ViewDriver } from './types.js';
import { vdiView } from './vdi.js';
import { vhdView } from './vhd.js';
import { vmdkView } from './vmdk.js';

export const VIEWS: ViewDriver[] = [rawView, vdiView, vhdView, vmdkView];

export function findView(name: string): ViewDriver | undefined {
  const n = name.toLowerCase();
  return VIEWS.find((v) => v.name === n || v.aliases?.includes(n));
}
