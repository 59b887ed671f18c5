/** Linear warmup to the peak learning rate, then cosine decay to minLr at totalSteps. */
export interface LrSchedule {
  peakLr: number;
  minLr: number;
  warmupSteps: number;
  totalSteps: number;
}

export function learningRate(s: LrSchedule, step: number): number {
  if (s.warmupSteps > 0 && step < s.warmupSteps) return (s.peakLr * (step + 1)) / s.warmupSteps;
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const progress = Math.min(1, (step - s.warmupSteps) / span);
  return s.minLr + 0.5 * (s.peakLr - s.minLr) * (1 + Math.cos(Math.PI * progress));
}
