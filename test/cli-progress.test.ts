/** The terminal progress display (plain-line mode, as in CI logs and pipes). */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { terminalProgress } from '../src/cli/progress.ts';

describe('terminalProgress (plain lines)', () => {
  afterEach(() => {
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  it('counts rate and ETA from the first update, so a resumed stage is not credited with its earlier steps', () => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2026-01-01T00:00:00Z'));
    const lines: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
      lines.push(String(chunk));
      return true;
    });
    const bar = terminalProgress('pretrain', 1000, 'steps');
    bar.update(800); // resumed at step 800
    vi.setSystemTime(new Date('2026-01-01T00:00:20Z'));
    bar.update(900, { loss: 0.5 });
    expect(lines).toHaveLength(2);
    expect(lines[1]).toBe('pretrain: 900/1000 steps (90%) 5 steps/s ETA 20s loss 0.5000\n');
  });
});
