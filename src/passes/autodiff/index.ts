// Reverse-mode autodiff: the pass, the VJP rule types and registry, stop_gradient.
export {
  AutodiffError,
  type AutodiffOptions,
  autodiff,
  GRAD_PREFIX,
  hasVjp,
  registerVjp,
  vjpRule,
} from './autodiff.ts';
export { autodiffPass } from './pass.ts';
export { leaf, none, type VjpContext, type VjpFn, type VjpRule, vjp } from './rule.ts';
export { CORE_VJPS } from './rules/index.ts';
export { STOP_GRADIENT, stopGradient } from './stop-gradient.ts';
