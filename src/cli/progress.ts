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
  // Rate and ETA count from the first update, so a stage resumed at step 800 does not count 800 steps as done in no time.
  let start = Date.now();
  let first: number | null = null;
  const rateOf = (done: number, now: number) => {
    if (first === null) {
      first = done;
      start = now;
    }
    const secs = (now - start) / 1000;
    return secs > 0 ? (done - first) / secs : 0;
  };
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
    let started = false;
    return {
      update(done, info = {}) {
        const rate = Math.round(rateOf(done, Date.now()));
        // The bar's own ETA buffer starts at the first value it sees, so it starts there too.
        if (!started) bar.start(total, done, { rate: '0', info: '' });
        started = true;
        const text = Object.entries(info)
          .map(([k, v]) => `${k} ${fmt(v)}`)
          .join(' ');
        bar.update(done, { rate: String(rate), info: text });
      },
      stop() {
        if (started) bar.stop();
      },
    };
  }
  let lastPrint = 0;
  return {
    update(done, info = {}) {
      const now = Date.now();
      const rate = rateOf(done, now);
      if (now - lastPrint < 10_000 && done < total) return;
      lastPrint = now;
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
