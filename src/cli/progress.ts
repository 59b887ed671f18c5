/**
 * Progress display for long stages: a bar with rate and ETA on a terminal, periodic plain lines otherwise
 * (CI logs, pipes), so long work is never silent.
 */
import cliProgress from 'cli-progress';

import type { ProgressFactory } from '../pipeline/progress.ts';

function fmt(value: string | number): string {
  return typeof value === 'number' ? (Number.isInteger(value) ? String(value) : value.toPrecision(4)) : value;
}

export const terminalProgress: ProgressFactory = (label, total, unit) => {
  const start = Date.now();
  if (process.stderr.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${label.padEnd(22)} [{bar}] {percentage}% {value}/{total} ${unit} | {rate} ${unit}/s | ETA {eta_formatted} {info}`,
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { rate: '0', info: '' });
    return {
      update(done, info = {}) {
        const secs = (Date.now() - start) / 1000;
        const rate = secs > 0 ? Math.round(done / secs) : 0;
        const text = Object.entries(info)
          .map(([k, v]) => `${k} ${fmt(v)}`)
          .join(' ');
        bar.update(done, { rate: String(rate), info: text });
      },
      stop() {
        bar.stop();
      },
    };
  }
  let lastPrint = 0;
  return {
    update(done, info = {}) {
      const now = Date.now();
      if (now - lastPrint < 10_000 && done < total) return;
      lastPrint = now;
      const secs = (now - start) / 1000;
      const rate = secs > 0 ? done / secs : 0;
      const eta = rate > 0 ? Math.round((total - done) / rate) : 0;
      const text = Object.entries(info)
        .map(([k, v]) => `${k} ${fmt(v)}`)
        .join(' ');
      process.stderr.write(
        `${label}: ${done}/${total} ${unit} (${Math.round((100 * done) / total)}%) ${Math.round(rate)} ${unit}/s ETA ${eta}s ${text}\n`,
      );
    },
    stop() {},
  };
};
