// Preload for CLI tests (`node --import ./full-disk.mjs bin/peftc.js ...`): a disk that is
// full after PEFTC_TEST_DISK_BYTES bytes. Every later write goes to /dev/full, so the
// kernel itself answers ENOSPC, as a full disk does; stdout/stderr are left alone.
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const full = fs.openSync('/dev/full', 'w');
let left = Number(process.env.PEFTC_TEST_DISK_BYTES ?? 0);
const writeSync = fs.writeSync;
fs.writeSync = function (fd, buf, ...rest) {
  if (fd <= 2) return writeSync.call(this, fd, buf, ...rest);
  left -= typeof rest[1] === 'number' ? rest[1] : Buffer.byteLength(buf);
  return writeSync.call(this, left < 0 ? full : fd, buf, ...rest);
};
syncBuiltinESMExports();
