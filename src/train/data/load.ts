// Reads training data files into documents (text, prompt/completion pairs, or
// ready token ids). Errors name the file and line so a user can fix the input.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FormatError } from '../../io/errors.ts';

/** One training document, before tokenization; `where` is `file:line` for error messages. */
export type Document =
  | { readonly kind: 'text'; readonly text: string; readonly where: string }
  | { readonly kind: 'pair'; readonly prompt: string; readonly completion: string; readonly where: string }
  | { readonly kind: 'ids'; readonly ids: readonly number[]; readonly where: string };

export type DataFormat = 'text' | 'jsonl';

/** `.jsonl` (and `.ndjson`) files are JSON lines; anything else is plain text. */
export function detectFormat(file: string): DataFormat {
  const ext = path.extname(file).toLowerCase();
  return ext === '.jsonl' || ext === '.ndjson' ? 'jsonl' : 'text';
}

function readNonEmpty(file: string): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new FormatError(file, `cannot read data file (${(e as Error).message})`);
  }
  if (text.trim() === '') throw new FormatError(file, 'data file is empty; it needs at least one document');
  return text;
}

/** Loads a data file: plain text (documents split on blank lines) or JSONL (see `parseJsonl`). */
export function loadDocuments(file: string, format: DataFormat = detectFormat(file)): Document[] {
  const text = readNonEmpty(file);
  return format === 'jsonl' ? parseJsonl(text, file) : splitText(text, file);
}

/** Plain text: documents are separated by one or more blank lines; inner line breaks are kept. */
export function splitText(text: string, file: string): Document[] {
  const docs: Document[] = [];
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  let start = -1;
  let buf: string[] = [];
  const flush = () => {
    if (buf.length > 0) docs.push({ kind: 'text', text: buf.join('\n'), where: `${file}:${start + 1}` });
    buf = [];
  };
  lines.forEach((line, i) => {
    if (line.trim() === '') {
      flush();
      return;
    }
    if (buf.length === 0) start = i;
    buf.push(line);
  });
  flush();
  if (docs.length === 0) throw new FormatError(file, 'data file has no documents');
  return docs;
}

function isIdArray(x: unknown): x is number[] {
  return Array.isArray(x) && x.every((v) => Number.isInteger(v) && v >= 0);
}

/**
 * JSON lines, one document per non-blank line: `{"text": ...}`, `{"prompt": ..., "completion": ...}`
 * (only the completion is learned) or `{"input_ids": [...]}` (used as is).
 */
export function parseJsonl(text: string, file: string): Document[] {
  const docs: Document[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].trim();
    if (line === '') continue;
    const where = `${file}:${i + 1}`;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      throw new FormatError(where, `not valid JSON (${(e as Error).message})`);
    }
    docs.push(jsonlDocument(obj, where));
  }
  if (docs.length === 0) throw new FormatError(file, 'data file has no documents');
  return docs;
}

function jsonlDocument(obj: unknown, where: string): Document {
  const expected =
    'expected {"text": string}, {"prompt": string, "completion": string} or {"input_ids": [int, ...]}';
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new FormatError(where, `line is not a JSON object; ${expected}`);
  }
  const o = obj as Record<string, unknown>;
  if ('input_ids' in o) {
    if (!isIdArray(o.input_ids) || o.input_ids.length === 0) {
      throw new FormatError(where, 'must be a non-empty array of non-negative integers', 'input_ids');
    }
    return { kind: 'ids', ids: o.input_ids, where };
  }
  if ('prompt' in o || 'completion' in o) {
    for (const k of ['prompt', 'completion']) {
      if (typeof o[k] !== 'string') {
        throw new FormatError(where, `${k in o ? 'must be a string' : 'missing'}; ${expected}`, k);
      }
    }
    return { kind: 'pair', prompt: o.prompt as string, completion: o.completion as string, where };
  }
  if ('text' in o) {
    if (typeof o.text !== 'string') throw new FormatError(where, 'must be a string', 'text');
    return { kind: 'text', text: o.text, where };
  }
  const keys = Object.keys(o);
  throw new FormatError(where, `no known key (found ${keys.length ? keys.join(', ') : 'none'}); ${expected}`);
}

/** A `--tokens` file: a JSON array of token-id arrays, one per document. */
export function loadTokenFile(file: string): Document[] {
  const text = readNonEmpty(file);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw new FormatError(file, `not valid JSON (${(e as Error).message})`);
  }
  if (!Array.isArray(data) || data.length === 0) {
    throw new FormatError(
      file,
      'expected a non-empty JSON array of token-id arrays, e.g. [[1, 2, 3], [4, 5]]',
    );
  }
  return data.map((ids, i) => {
    if (!isIdArray(ids) || ids.length === 0) {
      throw new FormatError(file, 'must be a non-empty array of non-negative integers', `[${i}]`);
    }
    // `file[row]`: rows (and positions) count from 0, as the JSON array indexes them.
    return { kind: 'ids', ids, where: `${file}[${i}]` };
  });
}
