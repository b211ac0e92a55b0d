// Registers the generic passes, the train-step passes (autodiff, checkpoint, optimizer)
// and the phases. Importing this module (or src/passes/index.ts) is enough.
import { autodiffPass } from './autodiff/pass.ts';
import { checkpointPass } from './checkpoint/pass.ts';
import { fuseDropoutPass } from './fuse/dropout.ts';
import { fuseElementwisePass } from './fuse/elementwise.ts';
import { fuseEpiloguePass } from './fuse/matmul-map.ts';
import { fuseOperandMapPass } from './fuse/operand-map.ts';
import { fuseRopeLayoutPass } from './fuse/rope-layout.ts';
import { canonicalizePass, csePass, dcePass, evalModePass, foldPass } from './generic/index.ts';
import { optimizerPass } from './optimizer/pass.ts';
import { hasPass, registerPass } from './pass.ts';
import './phases.ts';

for (const p of [
  dcePass,
  csePass,
  foldPass,
  canonicalizePass,
  evalModePass,
  autodiffPass,
  checkpointPass,
  optimizerPass,
  fuseRopeLayoutPass,
  fuseElementwisePass,
  fuseEpiloguePass,
  fuseDropoutPass,
  fuseOperandMapPass,
]) {
  if (!hasPass(p.name)) registerPass(p as never);
}
