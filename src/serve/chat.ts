// The chat template that turns `messages` into a prompt: the model's own
// (`tokenizer_config.json` `chat_template`, a Jinja template rendered by
// @huggingface/jinja as transformers' apply_chat_template renders it, with
// `add_generation_prompt` true and the special tokens by name) where the model has one,
// else DEFAULT_CHAT_TEMPLATE (ChatML), whose end-of-turn marker is then a stop string.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { FormatError } from '../io/errors.ts';
import { badRequest } from './engine.ts';

export interface ChatMessage {
  readonly role: string;
  readonly content: string;
}

/** ChatML: `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then `<|im_start|>assistant\n`. */
export const DEFAULT_CHAT_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

export interface RenderedChat {
  readonly text: string;
  /**
   * Whether encoding adds the tokenizer's special tokens (BOS): not for a model's own
   * template, which writes them itself (transformers encodes its output without them).
   */
  readonly addSpecialTokens: boolean;
  /** Stop strings the template implies (the default's end-of-turn marker). */
  readonly stop: readonly string[];
}

export class ChatTemplate {
  private readonly template: Template;

  private constructor(
    /** 'model': the model's tokenizer_config.json; 'default': DEFAULT_CHAT_TEMPLATE. */
    readonly source: 'model' | 'default',
    text: string,
    private readonly specials: Record<string, string>,
    file: string,
  ) {
    try {
      this.template = new Template(text);
    } catch (e) {
      throw new FormatError(
        file,
        `chat_template is not a valid Jinja template: ${(e as Error).message}`,
        'chat_template',
      );
    }
  }

  /** The template of the model in `dir` (undefined: no model directory), else the default. */
  static forModel(dir: string | undefined): ChatTemplate {
    const file = dir ? join(dir, 'tokenizer_config.json') : '';
    if (file && existsSync(file)) {
      let cfg: Record<string, unknown>;
      try {
        cfg = JSON.parse(readFileSync(file, 'utf8'));
      } catch (e) {
        throw new FormatError(file, `not valid JSON (${(e as Error).message})`);
      }
      const t = pickTemplate(cfg.chat_template, file);
      if (t !== undefined) return new ChatTemplate('model', t, specialTokens(cfg), file);
    }
    return new ChatTemplate('default', DEFAULT_CHAT_TEMPLATE, {}, 'DEFAULT_CHAT_TEMPLATE');
  }

  render(messages: readonly ChatMessage[]): RenderedChat {
    let text: string;
    try {
      text = this.template.render({
        ...this.specials,
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: true,
      });
    } catch (e) {
      throw badRequest(`the chat template refused these messages: ${(e as Error).message}`, 'messages');
    }
    return this.source === 'model'
      ? { text, addSpecialTokens: false, stop: [] }
      : { text, addSpecialTokens: true, stop: ['<|im_end|>'] };
  }
}

/** `chat_template`: a string, or a list of `{name, template}` (the one named "default"). */
function pickTemplate(v: unknown, file: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (Array.isArray(v)) {
    const named = v as { name?: unknown; template?: unknown }[];
    const d = named.find((t) => t?.name === 'default') ?? named[0];
    if (typeof d?.template === 'string') return d.template;
  }
  throw new FormatError(
    file,
    'chat_template must be a string or a list of {name, template}',
    'chat_template',
  );
}

/** bos_token, eos_token, ... as their text (a string, or an AddedToken object's content). */
function specialTokens(cfg: Record<string, unknown>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of ['bos_token', 'eos_token', 'unk_token', 'pad_token']) {
    const v = cfg[k] as string | { content?: unknown } | undefined;
    const text = typeof v === 'string' ? v : typeof v?.content === 'string' ? v.content : undefined;
    if (text !== undefined) out[k] = text;
  }
  return out;
}
