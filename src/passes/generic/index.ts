export { canonicalize, canonicalizePass, canonicalizeRules } from './canonicalize.ts';
export { cse, csePass } from './cse.ts';
export { dce, dcePass } from './dce.ts';
export { evalMode, evalModePass } from './eval-mode.ts';
export { type FoldOptions, fold, foldPass, foldRules } from './fold.ts';
