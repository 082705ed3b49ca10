import { describe, expect, it } from 'vitest';
import { DEFAULT_PLATFORMS, platformSet, splitName, trimName } from '../../scoring/names.js';

const platforms = platformSet();

describe('splitName', () => {
  it.each([
    // name, registrable, subdomain, subLabelCount, longestLabel, platform
    ['www.example.com', 'example.com', 'www', 1, 3, false],
    ['a.b.example.co.uk', 'example.co.uk', 'a.b', 2, 1, false],
    ['example.com', 'example.com', '', 0, 0, false],
    // private suffix under a listed platform: each tenant is its own registrable domain
    ['d1234abcd.cloudfront.net', 'd1234abcd.cloudfront.net', '', 0, 0, true],
    ['x.y.myapp.herokuapp.com', 'myapp.herokuapp.com', 'x.y', 2, 1, true],
    ['bucket-7f3a.s3.amazonaws.com', 'bucket-7f3a.s3.amazonaws.com', '', 0, 0, true],
    // wildcard private rule: the whole name is a suffix; it is its own registrable domain
    ['ec2-1-2-3-4.compute-1.amazonaws.com', 'ec2-1-2-3-4.compute-1.amazonaws.com', '', 0, 0, true],
    // ICANN domain that is a platform apex (not a private suffix): lexical signals waived
    ['rr3---sn-4g5e6nzz.googlevideo.com', 'googlevideo.com', 'rr3---sn-4g5e6nzz', 1, 17, true],
    // private suffix NOT under a listed platform: split at the ICANN boundary so the tenant label is scored
    ['mzxw6ytboi.attacker.eu.org', 'eu.org', 'mzxw6ytboi.attacker', 2, 10, false],
    // no registrable domain at all
    ['internal', 'internal', '', 0, 0, false],
    ['10.0.0.1', '10.0.0.1', '', 0, 0, false],
  ] as const)('%s → %s | %s', (name, registrable, subdomain, subLabels, longest, platform) => {
    const s = splitName(name, platforms);
    expect(s.registrable).toBe(registrable);
    expect(s.subdomain).toBe(subdomain);
    expect(s.subLabelCount).toBe(subLabels);
    expect(s.longestLabel).toBe(longest);
    expect(s.platform).toBe(platform);
    expect(s.labelCount).toBe(name.split('.').length);
  });

  it('honours a private suffix only when its ICANN owner is configured as a platform', () => {
    const none = platformSet([], false);
    expect(splitName('x.myapp.herokuapp.com', none)).toMatchObject({ registrable: 'herokuapp.com', subdomain: 'x.myapp', platform: false });
    const withEu = platformSet(['EU.ORG.'], false);
    expect(splitName('data.attacker.eu.org', withEu)).toMatchObject({ registrable: 'attacker.eu.org', subdomain: 'data', platform: true });
  });
});

describe('platform list', () => {
  it('ships the multi-tenant apexes that hold the long benign names', () => {
    for (const apex of ['amazonaws.com', 'webex.com', 'office.net', 'azure.com', 'akamaiedge.net', 'a2z.com', 'trafficmanager.net', 'googleapis.com']) {
      expect(DEFAULT_PLATFORMS).toContain(apex);
    }
  });
  it('normalises configured names', () => {
    expect(trimName('Corp.Example.')).toBe('corp.example');
    expect(platformSet(['Foo.Example.']).has('foo.example')).toBe(true);
  });
});
