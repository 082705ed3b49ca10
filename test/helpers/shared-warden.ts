// One dnswarden and its own NSD upstream, shared by the tests of a file (or of a describe block):
// started in beforeAll, stopped in afterAll. Read them through the returned object once tests run.
import { afterAll, beforeAll } from 'vitest';
import { startUpstream, type Upstream } from './upstream.js';
import { startWarden, type Warden } from './warden.js';

export interface SharedWarden {
  readonly warden: Warden;
  readonly upstream: Upstream;
}

export function useSharedWarden(): SharedWarden {
  const shared = {} as { warden: Warden; upstream: Upstream };
  beforeAll(async () => {
    shared.upstream = await startUpstream();
    shared.warden = await startWarden({}, { upstream: shared.upstream });
  });
  afterAll(async () => {
    await shared.warden?.close();
    await shared.upstream?.stop();
  });
  return shared;
}
