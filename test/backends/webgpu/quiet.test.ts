// Quiet by default (issue 17 item 10): Dawn's two "maxDynamic...BuffersPerPipelineLayout
// artificially reduced" notices no longer open every command; --verbose shows them; any
// other stderr line (a real Dawn warning or error) still gets through.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isDawnNotice, noticeFilter, wantsVerbose } from '../../../bin/dawn-notices.js';
import { peftc } from '../../cli/run-cli.ts';

const NOTICE_U =
  'Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16 to fit dynamic offset allocation limit.';
const NOTICE_S =
  'Warning: maxDynamicStorageBuffersPerPipelineLayout artificially reduced from 500000 to 16 to fit dynamic offset allocation limit.';

function filtered(chunks: string[]): string {
  let out = '';
  const f = noticeFilter((s) => {
    out += s;
  });
  for (const c of chunks) f.push(c);
  f.end();
  return out;
}

describe('the notice filter', () => {
  it('drops exactly the known notices, whole lines only', () => {
    expect(isDawnNotice(NOTICE_U)).toBe(true);
    expect(isDawnNotice(NOTICE_S)).toBe(true);
    expect(isDawnNotice(`${NOTICE_U} extra`)).toBe(false);
    expect(isDawnNotice('Warning: maxBufferSize artificially reduced from 1 to 2.')).toBe(false);
    expect(isDawnNotice('Error: device lost')).toBe(false);
  });

  it('keeps everything else, in order, whatever the chunking', () => {
    const real = 'Warning: Dawn could not create the pipeline\npeftc: error: device lost\n';
    const text = `${NOTICE_U}\n${NOTICE_S}\n${real}partial`;
    expect(filtered([text])).toBe(`${real}partial`);
    // Split inside a notice, inside the newline-less prefix, one character at a time.
    expect(filtered([text.slice(0, 30), text.slice(30, 140), text.slice(140)])).toBe(`${real}partial`);
    expect(filtered([...text])).toBe(`${real}partial`);
  });

  it('a partial line that cannot be a notice goes out at once (a progress redraw)', () => {
    const seen: string[] = [];
    const f = noticeFilter((s) => seen.push(s));
    f.push('\r step 3/10');
    expect(seen).toEqual(['\r step 3/10']);
    f.push('Warn');
    expect(seen).toHaveLength(1); // might still become a notice: held
    f.push('ing: the adapter is slow\n');
    expect(seen.join('')).toBe('\r step 3/10Warning: the adapter is slow\n');
  });

  it('--verbose (before any --) or PEFTC_VERBOSE=1 asks for the notices', () => {
    expect(wantsVerbose(['train', '--verbose'], {})).toBe(true);
    expect(wantsVerbose(['train', '--', '--verbose'], {})).toBe(false);
    expect(wantsVerbose(['train'], { PEFTC_VERBOSE: '1' })).toBe(true);
    expect(wantsVerbose(['train'], {})).toBe(false);
  });
});

describe('peftc on WebGPU', () => {
  const dir = mkdtempSync(join(tmpdir(), 'peftc-quiet-'));
  const tokens = join(dir, 'tokens.json');
  writeFileSync(tokens, '[[1, 2, 3]]');
  const args = ['logits', '--model', 'examples/models/tiny-llama', '--tokens', tokens, '--backend', 'webgpu'];

  it('prints no Dawn notice on stderr; --verbose shows what Dawn says', () => {
    const quiet = peftc([...args, '--out', join(dir, 'a.safetensors')]);
    if (/no WebGPU adapter found/.test(quiet.stderr)) return; // no adapter: nothing to filter
    expect(quiet.code).toBe(0);
    expect(quiet.stderr).not.toMatch(/artificially reduced/);
    expect(quiet.stderr).toBe('');
    const loud = peftc([...args, '--out', join(dir, 'b.safetensors'), '--verbose']);
    expect(loud.code).toBe(0);
    // lavapipe and most Vulkan drivers trigger the notices; the filter is what hid them.
    for (const line of loud.stderr.split('\n').filter(Boolean)) expect(isDawnNotice(line)).toBe(true);
  });
});
