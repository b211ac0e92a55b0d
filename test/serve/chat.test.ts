// Chat templates: the model's own tokenizer_config.json `chat_template` rendered by
// @huggingface/jinja (special tokens by name, add_generation_prompt, raise_exception, the
// list form), else the documented ChatML default; and a chat through the server with a
// model's own template, answered as its rendering encoded without extra special tokens.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { CpuBackend } from '../../src/backends/cpu/index.ts';
import { FormatError } from '../../src/io/errors.ts';
import { ChatTemplate, DEFAULT_CHAT_TEMPLATE, RequestError } from '../../src/serve/index.ts';
import { alone, BASE, serve, tok } from './helpers.ts';

// Llama-2's chat template (as its tokenizer_config.json has it), shortened: system folded into the first user turn.
const LLAMA2 =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}" +
  "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

function modelDir(config: object): string {
  const dir = mkdtempSync(join(tmpdir(), 'peftc-chat-'));
  writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  return dir;
}

it("renders the model's own chat_template with its special tokens", () => {
  const t = ChatTemplate.forModel(
    modelDir({ chat_template: LLAMA2, bos_token: '<s>', eos_token: { content: '</s>' } }),
  );
  expect(t.source).toBe('model');
  const r = t.render([
    { role: 'system', content: 'Be kind.' },
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello' },
    { role: 'user', content: 'Bye' },
  ]);
  expect(r.text).toBe('<s>[INST] <<SYS>>\nBe kind.\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] Bye [/INST]');
  expect(r.addSpecialTokens).toBe(false);
  expect(r.stop).toEqual([]);
  // The template's own refusal is the request's fault (400), with its message.
  const e = (() => {
    try {
      t.render([{ role: 'assistant', content: 'x' }]);
    } catch (x) {
      return x;
    }
  })();
  expect(e).toBeInstanceOf(RequestError);
  expect((e as RequestError).status).toBe(400);
  expect((e as Error).message).toMatch(/alternate/);
});

it('takes the template named default from a list, and falls back to ChatML without one', () => {
  const listed = ChatTemplate.forModel(
    modelDir({
      chat_template: [
        { name: 'tool_use', template: 'T' },
        { name: 'default', template: 'D{{ messages|length }}' },
      ],
    }),
  );
  expect(listed.render([{ role: 'user', content: 'x' }]).text).toBe('D1');
  const none = ChatTemplate.forModel(modelDir({ bos_token: '<s>' }));
  expect(none.source).toBe('default');
  const r = none.render([{ role: 'user', content: 'Hi' }]);
  expect(r.text).toBe('<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n');
  expect(r).toMatchObject({ addSpecialTokens: true, stop: ['<|im_end|>'] });
  expect(DEFAULT_CHAT_TEMPLATE).toContain('<|im_start|>');
});

it('refuses a chat_template that is not a template, naming the file and key', () => {
  const dir = modelDir({ chat_template: '{% for x in %}' });
  expect(() => ChatTemplate.forModel(dir)).toThrow(FormatError);
  expect(() => ChatTemplate.forModel(dir)).toThrow(/tokenizer_config\.json: 'chat_template'/);
  expect(() => ChatTemplate.forModel(modelDir({ chat_template: 3 }))).toThrow(/chat_template/);
});

it("chats through the server with the model's own template", async () => {
  const backend = new CpuBackend();
  const chat = ChatTemplate.forModel(
    modelDir({
      chat_template:
        "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\\n' }}{% endfor %}assistant:",
    }),
  );
  const s = await serve(backend, { chat });
  try {
    const messages = [{ role: 'user' as const, content: 'Hello there' }];
    const r = await s.client.chat.completions.create({
      model: BASE,
      messages,
      max_tokens: 8,
      temperature: 0,
    });
    const rendered = chat.render(messages);
    const ids = tok.encode(rendered.text, { addSpecialTokens: false });
    expect(ids[0]).not.toBe(tok.bosId); // a model's template writes its own special tokens
    const ref = await alone(backend, -1, ids, 8);
    expect(r.choices[0].message.content).toBe(ref.text);
    expect(r.usage?.prompt_tokens).toBe(ids.length);
  } finally {
    await s.close();
  }
});
