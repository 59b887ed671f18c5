/** How pipeline stages report progress; the CLI supplies a terminal bar, tests a silent one. */
export interface Progress {
  update(done: number, info?: Record<string, string | number>): void;
  stop(): void;
}

export type ProgressFactory = (label: string, total: number, unit: string) => Progress;

export const silentProgress: ProgressFactory = () => ({ update() {}, stop() {} });
