// `peftc export`: the flag checks every format shares (src/cli/commands/export.ts). Each
// format's own artifact is tested in test/export/.
import { describe, expect, it } from 'vitest';
import { cli } from './run-cli.ts';

describe('peftc export', () => {
  it('refuses an unknown --format, listing the formats', async () => {
    const r = await cli(['export', '--format', 'onnx', '--model', 'tiny', '--out', '/tmp/x']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--format onnx is not an export format; choose one of:/);
  });
});
