// A SIGKILL during a checkpoint write leaves temp files (a half-written step folder, a half-written latest.json);
// the next resume removes them and goes on from the last complete checkpoint to the same weights.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { makeTrainer } from './fixtures/train-run.ts';

const killedWrite = (dir: string, mode: 'checkpoint' | 'file') => {
  const child = spawnSync(
    process.execPath,
    ['--import', 'tsx', path.join(__dirname, 'fixtures/checkpoint-kill.ts'), dir, mode],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  expect(child.signal, child.stderr.toString()).toBe('SIGKILL');
};

describe('resume after a kill mid-checkpoint', () => {
  it('removes the orphans of the killed save and resumes to bit-identical weights', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-hardening-ckpt-'));
    try {
      killedWrite(dir, 'checkpoint');
      killedWrite(dir, 'file');
      const orphans = fs.readdirSync(dir).filter((n) => /\.tmp-\d+-/.test(n));
      expect(orphans.map((n) => n.replace(/\.tmp-.*/, '')).sort()).toEqual(['latest.json', 'step-00000003']);
      expect(
        fs.readdirSync(
          path.join(
            dir,
            orphans.find((n) => n.startsWith('step'))!,
          ),
        ),
      ).toContain('model.safetensors');
      const resumed = makeTrainer(dir);
      expect(resumed.resume()).toBe(2);
      expect(fs.readdirSync(dir).sort()).toEqual(['latest.json', 'step-00000002']);
      resumed.run();
      const reference = makeTrainer(undefined);
      reference.run();
      for (const [k, t] of reference.model.params)
        expect(Buffer.from(resumed.model.param(k).data.buffer).equals(Buffer.from(t.data.buffer)), k).toBe(
          true,
        );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
