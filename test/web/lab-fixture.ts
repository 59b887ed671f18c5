/**
 * What the lab's tests run against: a runs folder with one small finished run (the quick preset made smaller still,
 * about half a minute), helpers to copy it into many runs and to fake a run in progress, and raw HTTP requests (fetch
 * would normalise the paths the traversal tests send).
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { resolveConfig } from '../../src/pipeline/config.ts';
import { runExperiment } from '../../src/pipeline/experiment.ts';
import { silentProgress } from '../../src/pipeline/progress.ts';

/** The quick preset at a third of its size: every stage and every page has something to show. */
export const TINY_RUN = {
  corpus: { tokens: 120_000 },
  tokenizer: { vocabSize: 400, trainDocuments: 800 },
  model: { dim: 32, nLayers: 2, nHeads: 2, nKvHeads: 2, hiddenDim: 64, contextLength: 128 },
  pretrain: { batchSize: 8, warmupSteps: 10, probeEvery: 40, probeItems: 12, checkpointEvery: 40 },
  eval: { batteryItemsPerDomain: 6, probeItemsPerK: 4, packageItems: 4, maxK: 2 },
  postTrain: { examples: 48, steps: 6, batchSize: 8 },
  finetune: {
    arms: ['cheat', 'control'] as ('cheat' | 'control')[],
    trainable: ['embedding'] as 'embedding'[],
    examples: 32,
    steps: 4,
    batchSize: 8,
  },
  interpret: {
    itemsPerDomain: 4,
    preventative: false,
    traitFinetunes: false,
    screeningTrial: false,
    screeningPerArm: 16,
  },
};

/** A fresh runs folder holding one finished tiny run named `name`; returns the runs folder. */
export async function makeRunsFolder(name = 'tiny'): Promise<string> {
  const runs = fs.mkdtempSync(path.join(os.tmpdir(), 'psm-lab-'));
  const config = resolveConfig({ preset: 'quick', overrides: TINY_RUN });
  await runExperiment(config, {
    runDir: path.join(runs, name),
    progress: silentProgress,
    log: () => undefined,
  });
  return runs;
}

/** Copies a finished run's records (not its models) into `count` more runs, for listing many runs. */
export function copyRunRecords(runs: string, from: string, count: number, prefix = 'copy'): string[] {
  const names: string[] = [];
  for (let i = 0; i < count; i++) {
    const name = `${prefix}-${String(i).padStart(2, '0')}`;
    const dir = path.join(runs, name);
    fs.mkdirSync(dir);
    for (const f of ['config.json', 'config.yaml', 'results.json', 'report.json', 'metrics.jsonl'])
      fs.copyFileSync(path.join(runs, from, f), path.join(dir, f));
    names.push(name);
  }
  return names;
}

/** GET or POST with the path sent as given (no normalisation of "..") and any headers. */
export function rawRequest(
  url: string,
  pathname: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: u.hostname, port: u.port, path: pathname, method: opts.method ?? 'GET', headers: opts.headers },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      },
    );
    req.on('error', reject);
    if (opts.body !== undefined) req.write(opts.body);
    req.end();
  });
}

/** Server-sent events of a finished response body, in order. */
export function sseEvents(body: string): { event: string; data: unknown }[] {
  return body
    .split('\n\n')
    .filter((b) => b.trim())
    .map((block) => {
      const event = /^event: (.*)$/m.exec(block)?.[1] ?? 'message';
      const data = block
        .split('\n')
        .filter((l) => l.startsWith('data: '))
        .map((l) => l.slice(6))
        .join('\n');
      return { event, data: data ? JSON.parse(data) : null };
    });
}
