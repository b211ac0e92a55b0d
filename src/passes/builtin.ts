// Registers the generic passes. Importing this module (or src/passes/index.ts) is enough.
import { canonicalizePass, csePass, dcePass, evalModePass, foldPass } from './generic/index.ts';
import { hasPass, registerPass } from './pass.ts';

for (const p of [dcePass, csePass, foldPass, canonicalizePass, evalModePass]) {
  if (!hasPass(p.name)) registerPass(p as never);
}
