// autodiff as a named pass for pipelines: `{"pass": "autodiff", "loss": "loss"}`.
// Params are chosen by role (trainable) plus `extraWrt`; a predicate needs the TS API.
import { z } from 'zod';
import type { PassDef } from '../pass.ts';
import { autodiff } from './autodiff.ts';

const options = z.strictObject({
  /** Output name of the scalar loss. */
  loss: z.string().min(1).default('loss'),
  /** Frozen params whose gradient is wanted too. */
  extraWrt: z.array(z.string().min(1)).default([]),
});

export const autodiffPass: PassDef<z.infer<typeof options>> = {
  name: 'autodiff',
  description: 'reverse-mode gradients of a scalar loss for trainable params, as grad:<param> outputs',
  options,
  run: (g, { options: o }) => autodiff(g, { loss: o.loss, extraWrt: o.extraWrt }),
};
