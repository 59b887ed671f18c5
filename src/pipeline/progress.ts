/** Progress reporting lives with the measurements (the lowest layer that reports progress); re-exported here. */
export { silentProgress, type Progress, type ProgressFactory } from '../measurement/progress.ts';
