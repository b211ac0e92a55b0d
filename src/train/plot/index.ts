export {
  EVAL_SERIES,
  type LossPlotOptions,
  lossCurveSpec,
  renderLossCurve,
  TRAIN_SERIES,
  writeLossPlot,
} from './loss-curve.ts';
