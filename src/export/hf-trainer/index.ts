// `--format hf-trainer`: a Python project that runs the recipe with Hugging Face Trainer +
// PEFT under `accelerate launch` (FSDP, DeepSpeed ZeRO-2/3), for runs beyond one machine.
import type { ExportFormat } from '../format.ts';

export const hfTrainer: ExportFormat = {
  name: 'hf-trainer',
  summary:
    'a Python project running the recipe with Hugging Face Trainer + PEFT (accelerate: FSDP, DeepSpeed)',
  output: 'dir',
  flags: ['recipe', 'data'],
  required: ['recipe'],
  async run(o) {
    const { exportHfTrainer } = await import('./project.ts');
    return exportHfTrainer(o);
  },
};
