// The OpenAI-compatible server with a real client (the `openai` package) against the
// running server on 127.0.0.1: completions (text and token-id prompts), chat, streaming,
// the adapter picked by `model`, OpenAI-shaped errors (404 unknown model, 400 malformed
// JSON and out-of-range fields, 429 full queue), runtime adapter loading, and a client
// that disconnects mid-stream freeing its batch row. Greedy answers are compared with the
// same request decoded alone (helpers.ts `alone`). CPU backend.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CpuBackend } from '../../src/backends/cpu/index.ts';
import { quantizeCheckpoint } from '../../src/models/bnb4bit.ts';
import { openModel } from '../../src/models/open.ts';
import { ChatTemplate } from '../../src/serve/index.ts';
import { adapterDirs, alone, BASE, MODEL_DIR, type Served, serve, tok, until } from './helpers.ts';

const backend = new CpuBackend();

describe('peftc serve API (cpu)', () => {
  let s: Served;
  beforeAll(async () => {
    s = await serve(backend, { adapters: 3 });
  }, 20_000);
  afterAll(async () => {
    await s?.close();
  });

  it('lists the base model (its directory name) and the adapters', async () => {
    const page = await s.client.models.list();
    const ids = page.data.map((m) => m.id);
    expect(ids).toEqual([BASE, 'a0', 'a1', 'a2']);
    const a0 = page.data[1] as unknown as { parent: string };
    expect(a0.parent).toBe(BASE);
  });

  it('answers a completion as the request alone would, with usage', async () => {
    const prompt = 'Once upon a time';
    const r = await s.client.completions.create({ model: BASE, prompt, max_tokens: 10, temperature: 0 });
    const ids = tok.encode(prompt);
    const ref = await alone(backend, -1, ids, 10);
    expect(r.object).toBe('text_completion');
    expect(r.id).toMatch(/^cmpl-/);
    expect(typeof r.created).toBe('number');
    expect(r.model).toBe(BASE);
    expect(r.choices).toHaveLength(1);
    expect(r.choices[0].text).toBe(ref.text);
    expect(r.choices[0].finish_reason).toBe(ref.finishReason);
    expect(r.usage).toEqual({
      prompt_tokens: ids.length,
      completion_tokens: ref.ids.length,
      total_tokens: ids.length + ref.ids.length,
    });
  });

  it('takes the prompt as token ids, and several prompts as several choices', async () => {
    const ids = [256, 72, 105, 33];
    const one = await s.client.completions.create({
      model: 'a1',
      prompt: ids,
      max_tokens: 6,
      temperature: 0,
    });
    const ref = await alone(backend, 1, ids, 6);
    expect(one.choices[0].text).toBe(ref.text);
    const hi = (await alone(backend, 1, tok.encode('Hi'), 6)).text;
    for (const prompt of [
      [ids, tok.encode('Hi')],
      [tok.decode(ids), 'Hi'],
    ]) {
      const many = await s.client.completions.create({ model: 'a1', prompt, max_tokens: 6, temperature: 0 });
      expect(many.choices.map((c) => c.index)).toEqual([0, 1]);
      expect(many.choices[0].text).toBe(ref.text);
      expect(many.choices[1].text).toBe(hi);
    }
  });

  it('picks the adapter by model: each answers as that adapter alone, and they differ', async () => {
    const prompt = 'The cat';
    const ids = tok.encode(prompt);
    const texts: string[] = [];
    for (const [m, a] of [
      [BASE, -1],
      ['a0', 0],
      ['a2', 2],
    ] as const) {
      const r = await s.client.completions.create({ model: m, prompt, max_tokens: 12, temperature: 0 });
      expect(r.choices[0].text).toBe((await alone(backend, a, ids, 12)).text);
      texts.push(r.choices[0].text);
    }
    expect(new Set(texts).size).toBe(3);
  });

  it('chats with the default (ChatML) template', async () => {
    const messages = [
      { role: 'system' as const, content: 'Be brief.' },
      { role: 'user' as const, content: 'Hello' },
    ];
    const r = await s.client.chat.completions.create({
      model: 'a0',
      messages,
      max_tokens: 8,
      temperature: 0,
    });
    const rendered = ChatTemplate.forModel(MODEL_DIR).render(messages);
    expect(rendered.text).toBe(
      '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n',
    );
    const ref = await alone(backend, 0, tok.encode(rendered.text), 8, rendered.stop);
    expect(r.object).toBe('chat.completion');
    expect(r.id).toMatch(/^chatcmpl-/);
    expect(r.choices[0].message).toEqual({ role: 'assistant', content: ref.text });
    expect(r.choices[0].finish_reason).toBe(ref.finishReason);
    expect(r.usage?.completion_tokens).toBe(ref.ids.length);
  });

  it('streams completions and chat as server-sent events, the same text as without streaming', async () => {
    const prompt = 'Stream me';
    const plain = await s.client.completions.create({ model: 'a2', prompt, max_tokens: 12, temperature: 0 });
    const stream = await s.client.completions.create({
      model: 'a2',
      prompt,
      max_tokens: 12,
      temperature: 0,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = '';
    const finish: (string | null)[] = [];
    let usage: unknown;
    let chunks = 0;
    for await (const c of stream) {
      chunks++;
      expect(c.object).toBe('text_completion');
      for (const ch of c.choices) {
        text += ch.text;
        finish.push(ch.finish_reason);
      }
      if (c.usage) usage = c.usage;
    }
    expect(chunks).toBeGreaterThan(2);
    expect(text).toBe(plain.choices[0].text);
    expect(finish.at(-1)).toBe(plain.choices[0].finish_reason);
    expect(usage).toEqual(plain.usage);

    const messages = [{ role: 'user' as const, content: 'Hi' }];
    const chatPlain = await s.client.chat.completions.create({
      model: BASE,
      messages,
      max_tokens: 8,
      temperature: 0,
    });
    const chatStream = await s.client.chat.completions.create({
      model: BASE,
      messages,
      max_tokens: 8,
      temperature: 0,
      stream: true,
    });
    let content = '';
    let role: string | undefined;
    for await (const c of chatStream) {
      expect(c.object).toBe('chat.completion.chunk');
      role ??= c.choices[0]?.delta.role;
      content += c.choices[0]?.delta.content ?? '';
    }
    expect(role).toBe('assistant');
    expect(content).toBe(chatPlain.choices[0].message.content);
  });

  it('ends the raw stream with data: [DONE]', async () => {
    const res = await fetch(`${s.url}/v1/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: BASE, prompt: 'x', max_tokens: 3, temperature: 0, stream: true }),
    });
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const lines = (await res.text()).split('\n').filter((l) => l.length);
    expect(lines.every((l) => l.startsWith('data: '))).toBe(true);
    expect(lines.at(-1)).toBe('data: [DONE]');
  });

  it('stops at a stop string, cut before it', async () => {
    const prompt = 'Once upon a time';
    const free = await s.client.completions.create({ model: BASE, prompt, max_tokens: 12, temperature: 0 });
    const stop = free.choices[0].text.slice(3, 5);
    const r = await s.client.completions.create({
      model: BASE,
      prompt,
      max_tokens: 12,
      temperature: 0,
      stop,
    });
    const cut = free.choices[0].text.slice(0, free.choices[0].text.indexOf(stop));
    expect(r.choices[0].text).toBe(cut);
    expect(r.choices[0].finish_reason).toBe('stop');
  });

  it('repeats a seeded sampled answer exactly', async () => {
    const req = { model: 'a1', prompt: 'Seeded', max_tokens: 10, temperature: 0.9, top_p: 0.95, seed: 7 };
    const a = await s.client.completions.create(req);
    const b = await s.client.completions.create(req);
    expect(a.choices[0].text).toBe(b.choices[0].text);
  });

  it('answers an unknown model with 404 in OpenAI error shape', async () => {
    const e = await s.client.completions
      .create({ model: 'nope', prompt: 'x', max_tokens: 2 })
      .catch((x: unknown) => x);
    expect(e).toBeInstanceOf(OpenAI.NotFoundError);
    const err = e as InstanceType<typeof OpenAI.NotFoundError>;
    expect(err.status).toBe(404);
    expect(err.code).toBe('model_not_found');
    expect(err.param).toBe('model');
    expect(err.message).toMatch(/nope/);
    const chat = await s.client.chat.completions
      .create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] })
      .catch((x: unknown) => x);
    expect(chat).toBeInstanceOf(OpenAI.NotFoundError);
  });

  it('answers malformed JSON and out-of-range fields with 400 in OpenAI error shape', async () => {
    const post = (path: string, body: string) =>
      fetch(`${s.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    for (const path of ['/v1/completions', '/v1/chat/completions']) {
      const res = await post(path, '{"model": "tiny-llama", "prompt": ');
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: Record<string, unknown> };
      expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
      expect(body.error.type).toBe('invalid_request_error');
    }
    const bad: [Record<string, unknown>, string][] = [
      [{ temperature: 3 }, 'temperature'],
      [{ top_p: 0 }, 'top_p'],
      [{ max_tokens: -1 }, 'max_tokens'],
      [{ max_tokens: 1000 }, 'max_tokens'], // prompt + max_tokens beyond the 128-slot context
      [{ n: 2 }, 'n'],
      [{ prompt: [256, 9999] }, 'prompt'],
      [{ presence_penalty: 1 }, 'presence_penalty'],
    ];
    for (const [fields, param] of bad) {
      const e = await s.client.completions
        .create({ model: BASE, prompt: 'x', ...fields } as never)
        .catch((x: unknown) => x);
      expect(e, JSON.stringify(fields)).toBeInstanceOf(OpenAI.BadRequestError);
      expect((e as InstanceType<typeof OpenAI.BadRequestError>).param?.split('.')[0]).toBe(param);
    }
    const noMessages = await s.client.chat.completions
      .create({ model: BASE, messages: [] })
      .catch((x: unknown) => x);
    expect(noMessages).toBeInstanceOf(OpenAI.BadRequestError);
  });

  it('loads and unloads adapters at run time (/v1/load_lora_adapter, /v1/unload_lora_adapter)', async () => {
    const post = (path: string, body: object) =>
      fetch(`${s.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const dir = adapterDirs()[5];
    expect((await post('/v1/load_lora_adapter', { lora_name: 'late', lora_path: dir })).status).toBe(200);
    expect((await s.client.models.list()).data.map((m) => m.id)).toContain('late');
    const r = await s.client.completions.create({
      model: 'late',
      prompt: 'Late',
      max_tokens: 6,
      temperature: 0,
    });
    expect(r.choices[0].text).toBe((await alone(backend, 5, tok.encode('Late'), 6)).text);
    const again = await post('/v1/load_lora_adapter', { lora_name: 'late', lora_path: dir });
    expect(again.status).toBe(400);
    const missing = await post('/v1/load_lora_adapter', {
      lora_name: 'gone',
      lora_path: '/nonexistent/adapter',
    });
    expect(missing.status).toBe(400);
    expect(((await missing.json()) as { error: { message: string } }).error.message).toMatch(/nonexistent/);
    expect((await post('/v1/unload_lora_adapter', { lora_name: 'late' })).status).toBe(200);
    expect((await s.client.models.list()).data.map((m) => m.id)).not.toContain('late');
    const after = await s.client.completions
      .create({ model: 'late', prompt: 'x', max_tokens: 2 })
      .catch((x: unknown) => x);
    expect(after).toBeInstanceOf(OpenAI.NotFoundError);
    expect((await post('/v1/unload_lora_adapter', { lora_name: 'late' })).status).toBe(404);
  });

  it('reports health', async () => {
    const h = (await (await fetch(`${s.url}/health`)).json()) as Record<string, unknown>;
    expect(h).toMatchObject({
      status: 'ok',
      model: BASE,
      running: 0,
      waiting: 0,
      max_batch: 4,
      max_queue: 64,
    });
  });
});

describe('peftc serve queue (cpu)', () => {
  it('refuses a request beyond --max-queue with 429, and a client that disconnects mid-stream frees its row', async () => {
    // One row, one waiting place: A streams (holding the row), B waits, C is refused.
    const s = await serve(backend, { maxBatch: 1, maxQueue: 1, maxLen: 512, adapters: 1 });
    try {
      const subs: { result: Promise<{ finishReason: string; outputIds: readonly number[] }> }[] = [];
      const submit = s.engine.submit.bind(s.engine);
      s.engine.submit = (req) => {
        const sub = submit(req);
        subs.push(sub);
        return sub;
      };
      const controller = new AbortController();
      const a = await s.client.completions.create(
        // ignore_eos: A cannot end on its own before its client goes away
        {
          model: 'a0',
          prompt: 'A long one',
          max_tokens: 400,
          temperature: 0,
          stream: true,
          ignore_eos: true,
        } as never,
        { signal: controller.signal },
      );
      const chunks = (a as unknown as AsyncIterable<unknown>)[Symbol.asyncIterator]();
      await chunks.next(); // A holds the only row
      const b = s.client.completions.create({ model: BASE, prompt: 'B', max_tokens: 5, temperature: 0 });
      await until(() => s.engine.stats().waiting === 1);
      const c = await s.client.completions
        .create({ model: BASE, prompt: 'C', max_tokens: 5 })
        .catch((x: unknown) => x);
      expect(c).toBeInstanceOf(OpenAI.RateLimitError);
      expect((c as InstanceType<typeof OpenAI.RateLimitError>).status).toBe(429);
      controller.abort(); // A's client goes away mid-stream
      const aDone = await subs[0].result;
      expect(aDone.finishReason).toBe('cancelled');
      expect(aDone.outputIds.length).toBeLessThan(400);
      const bDone = await b; // B got the freed row
      expect(bDone.choices[0].text).toBe((await alone(backend, -1, tok.encode('B'), 5)).text);
      await until(() => s.engine.stats().running === 0 && s.engine.stats().waiting === 0);
    } finally {
      await s.close();
    }
  }, 20_000);
});

describe('peftc serve on a 4-bit base (cpu)', () => {
  it('serves adapters over an NF4 checkpoint as each alone on it', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'peftc-serve-nf4-')), 'tiny-llama-nf4');
    quantizeCheckpoint(MODEL_DIR, dir, { quantType: 'nf4', blocksize: 64, doubleQuant: true });
    const nf4 = openModel(dir);
    expect(nf4.quantization).toMatch(/nf4/);
    const s = await serve(backend, { model: nf4, name: 'tiny-llama-nf4', adapters: 2 });
    try {
      const answers = await Promise.all(
        ['tiny-llama-nf4', 'a0', 'a1'].map((m) =>
          s.client.completions.create({ model: m, prompt: 'Quantized', max_tokens: 6, temperature: 0 }),
        ),
      );
      const ids = tok.encode('Quantized');
      for (const [i, a] of [-1, 0, 1].entries())
        expect(answers[i].choices[0].text).toBe((await alone(backend, a, ids, 6, [], nf4)).text);
    } finally {
      await s.close();
    }
  }, 20_000);
});
