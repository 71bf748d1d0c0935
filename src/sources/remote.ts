// Remote sources: registers the http, https and s3 URL schemes with openLocation(). The CLI calls
// registerRemoteSchemes() once at start; tests import it too.

import { ReadOnlyError } from '../core/errors.js';
import { HttpSource } from './http/http-source.js';
import type { HttpOptions } from './http/options.js';
import { registerScheme } from './locate.js';
import { openS3 } from './s3/s3.js';

let defaults: Partial<HttpOptions> = {};

/** Options every remote source opened through openLocation() gets (e.g. --http-cache). */
export function setRemoteDefaults(options: Partial<HttpOptions>): void {
  defaults = { ...defaults, ...options };
}

export function remoteDefaults(): Partial<HttpOptions> {
  return { ...defaults };
}

export function registerRemoteSchemes(): void {
  const openHttp = async (name: string, o: { writable?: boolean }) => {
    if (o.writable) throw new ReadOnlyError('remote images are read-only (use an overlay to write)', { file: name });
    return HttpSource.open(name, defaults);
  };
  registerScheme('http', openHttp);
  registerScheme('https', openHttp);
  registerScheme('s3', async (name, o) => {
    if (o.writable) throw new ReadOnlyError('remote images are read-only (use an overlay to write)', { file: name });
    return openS3(name, defaults);
  });
}
