// `checkpoint` as a named pass (the train phase runs it after autodiff when the recipe
// sets `checkpointing`): segments are decoder layers; other segmentations need the TS API.
import { z } from 'zod';
import type { PassDef } from '../pass.ts';
import { checkpointActivations } from './index.ts';

const options = z.strictObject({
  /** Output name of the scalar loss: the forward nodes are its ancestors. */
  loss: z.string().min(1).default('loss'),
});

export const checkpointPass: PassDef<z.infer<typeof options>> = {
  name: 'checkpoint',
  description: 'activation checkpointing: the backward recomputes each decoder layer from its inputs',
  options,
  run: (g, { options: o }) => checkpointActivations(g, { loss: o.loss }),
};
