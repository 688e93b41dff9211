// What the process holds resident, by kind, for stats(): read from /proc on Linux.

import { readFileSync } from 'node:fs';

/**
 * What is resident, by kind: hot indexes in native memory, mapped segment files (their pages are
 * the OS page cache's to keep or drop), and the process's anonymous and file-backed RSS from
 * /proc/self/status (Linux; undefined elsewhere). Anonymous RSS is what hotBytes bounds, plus the
 * JS heap and fixed costs; file-backed RSS is mapped pages the kernel may reclaim.
 */
export function residentMemory(hotNativeBytes: number, mappedBytes: number) {
  let rssAnonBytes: number | undefined;
  let rssFileBytes: number | undefined;
  if (process.platform === 'linux') {
    const status = readFileSync('/proc/self/status', 'utf8');
    const kb = (key: string) => {
      const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
      return m ? Number(m[1]) * 1024 : undefined;
    };
    rssAnonBytes = kb('RssAnon');
    rssFileBytes = kb('RssFile');
  }
  return { hotNativeBytes, mappedBytes, rssAnonBytes, rssFileBytes, heapUsedBytes: process.memoryUsage().heapUsed };
}
