// Remote sources: registers the http, https and s3 URL schemes with openLocation(). The CLI calls
// registerRemoteSchemes() once at start; tests import it too. The HTTP machinery (undici among
// it, which takes a noticeable time to load) is imported only when a URL is actually opened, so
// commands on local files start as fast as before.

import { ReadOnlyError } from '../core/errors.js';
import type { HttpOptions } from './http/options.js';
import { registerScheme } from './locate.js';

let defaults: Partial<HttpOptions> = {};

/** Options every remote source opened through openLocation() gets (e.g. --http-cache). */
export function setRemoteDefaults(options: Partial<HttpOptions>): void {
  defaults = { ...defaults, ...options };
}

export function remoteDefaults(): Partial<HttpOptions> {
  return { ...defaults };
}

export function registerRemoteSchemes(): void {
  const readOnly = (name: string, o: { writable?: boolean }) => {
    if (o.writable) throw new ReadOnlyError('remote images are read-only (use an overlay to write)', { file: name });
  };
  const openHttp = async (name: string, o: { writable?: boolean }) => {
    readOnly(name, o);
    const { HttpSource } = await import('./http/http-source.js');
    return HttpSource.open(name, defaults);
  };
  registerScheme('http', openHttp);
  registerScheme('https', openHttp);
  registerScheme('s3', async (name, o) => {
    readOnly(name, o);
    const { openS3 } = await import('./s3/s3.js');
    return openS3(name, defaults);
  });
}
