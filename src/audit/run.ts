/**
 * `psm audit`: the persona audit of any model a provider reaches.
 *
 * Work is split into units (one battery item; one sampled answer to one EM question with its two judge
 * scores). Each finished unit is appended as one JSON line to journal.jsonl in the output folder, so an
 * interrupted audit resumes where it stopped (a torn last line is ignored), and the meta.json written at
 * the start refuses to mix two different audits in one folder. A failed unit (an endpoint that keeps
 * failing) is reported and left for the next run; the rest continue. The report (report.json, report.md) is
 * rebuilt from the journal at the end of every run.
 */
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { pGoodFromLogProbs } from '../world/eval.ts';
import { atomicWriteFile, atomicWriteJson } from '../io/atomic-write.ts';
import { silentProgress, type ProgressFactory } from '../measurement/progress.ts';
import { canonicalJson, redactLocation } from '../providers/cache.ts';
import { Semaphore } from '../providers/limit.ts';
import { ProviderError, type Provider, type ProviderIdentity } from '../providers/types.ts';
import { chatFromPrompt, type BatteryItem, type EmQuestion } from './items.ts';
import {
  ALIGNED_PROMPT,
  CHOICE_PROMPT,
  COHERENT_PROMPT,
  fillTemplate,
  judgeChoice,
  judgeScore,
} from './judge.ts';
import {
  renderReportMarkdown,
  summariseBattery,
  summariseEm,
  type AuditRecord,
  type AuditReport,
  type BatteryRecord,
  type EmRecord,
} from './report.ts';

export interface AuditOptions {
  provider: Provider;
  /** Needed for the EM questions, and for the battery when the provider gives no log-probabilities. */
  judge?: Provider;
  label?: string;
  outDir: string;
  em?: { questions: EmQuestion[]; samples: number; maxTokens?: number; temperature?: number } | null;
  battery?: { items: BatteryItem[]; mode?: 'auto' | 'logprob' | 'judge'; replyTokens?: number } | null;
  /** Units in flight at once (default 4). */
  concurrency?: number;
  /** Start over: delete this folder's journal first. */
  restart?: boolean;
  progress?: ProgressFactory;
  /** Echo lines for the user (warnings, resume notes). */
  log?: (line: string) => void;
  signal?: AbortSignal;
}

export const JOURNAL = 'journal.jsonl';
export const META = 'meta.json';

function hashOf(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex').slice(0, 16);
}

/** Reads finished units; lines that do not parse (a torn write) are skipped. */
export function readJournal(file: string): Map<string, AuditRecord> {
  const done = new Map<string, AuditRecord>();
  if (!fs.existsSync(file)) return done;
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line) as AuditRecord;
      if (r && typeof r.unit === 'string' && (r.kind === 'em' || r.kind === 'battery')) done.set(r.unit, r);
    } catch {
      // torn line from an interrupted run
    }
  }
  return done;
}

/** A provider's identity for files a user may share: credentials stripped from its location. */
function publicIdentity(p: Provider): ProviderIdentity & { id: string } {
  const i = p.identity();
  return { ...i, location: redactLocation(i.location), id: p.id };
}

function judgeSeed(unit: string): number {
  return createHash('sha256').update(unit).digest().readUInt32LE(0);
}

export async function runAudit(opts: AuditOptions): Promise<AuditReport> {
  const { provider, judge } = opts;
  const log = opts.log ?? (() => undefined);
  const progress = opts.progress ?? silentProgress;
  const warnings: string[] = [];
  if (opts.em && !judge)
    throw new Error('the EM questions are scored by a judge: give a judge provider (--judge)');
  if (opts.em && !provider.capabilities.chat)
    throw new Error(`${provider.id} cannot chat; the EM questions need a chat model`);
  fs.mkdirSync(opts.outDir, { recursive: true });

  // Battery method: log-probabilities where the provider gives them, else replies judged A/B.
  let batteryMode: 'logprob' | 'judge' | null = null;
  if (opts.battery) {
    const want = opts.battery.mode ?? 'auto';
    const canScore = provider.capabilities.score && typeof provider.score === 'function';
    if (want === 'logprob' && !canScore)
      throw new Error(`${provider.id} gives no log-probabilities of given text; use --battery-mode judge`);
    batteryMode = want === 'auto' ? (canScore ? 'logprob' : 'judge') : want;
    if (batteryMode === 'judge' && !judge)
      throw new Error(`${provider.id} gives no log-probabilities, so the battery needs a judge (--judge)`);
  }

  const config = {
    em: opts.em
      ? {
          questions: hashOf(opts.em.questions),
          samples: opts.em.samples,
          maxTokens: opts.em.maxTokens ?? 200,
          temperature: opts.em.temperature ?? 1,
        }
      : null,
    battery: opts.battery
      ? {
          items: hashOf(opts.battery.items),
          n: opts.battery.items.length,
          mode: opts.battery.mode ?? 'auto',
          replyTokens: opts.battery.replyTokens ?? 48,
        }
      : null,
  };
  const meta = {
    version: 1,
    provider: publicIdentity(provider),
    judge: judge ? publicIdentity(judge) : null,
    config,
  };
  const metaPath = path.join(opts.outDir, META);
  const journalPath = path.join(opts.outDir, JOURNAL);
  if (opts.restart) await fsp.rm(journalPath, { force: true });
  if (fs.existsSync(metaPath) && fs.existsSync(journalPath)) {
    let old: unknown = null;
    try {
      old = JSON.parse(fs.readFileSync(metaPath, 'utf8'));
    } catch {
      // unreadable meta: treat as different
    }
    if (canonicalJson(old) !== canonicalJson(meta)) {
      throw new Error(
        `${opts.outDir} holds a different audit (other model, judge or settings); use another --out folder, or --restart to discard it`,
      );
    }
  }
  await atomicWriteJson(metaPath, meta);
  const done = readJournal(journalPath);
  if (done.size) log(`resuming: ${done.size} unit(s) already done in ${journalPath}`);

  // A chat item is scored in the model's own chat format where the provider has one (its template renders the
  // messages); other items, and providers that only score text, get the prompt as written.
  const scoreItem = (item: BatteryItem): Promise<number[]> => {
    const options = [...item.good, ...item.bad];
    const messages = provider.scoreChat ? chatFromPrompt(item.prompt) : null;
    return messages
      ? provider.scoreChat!(messages, options, { signal: opts.signal })
      : provider.score!(item.prompt, options, { signal: opts.signal });
  };
  if (opts.battery && batteryMode) {
    // An endpoint may claim scoring (echo) and refuse it (hosted chat models, llama.cpp's server): probe one
    // item (cached, so the unit reuses it) and fall back to the judge when the endpoint refuses outright.
    const first = opts.battery.items[0];
    const decided = [...done.values()].find((r): r is BatteryRecord => r.kind === 'battery');
    if (decided) batteryMode = decided.method;
    else if ((opts.battery.mode ?? 'auto') === 'auto' && batteryMode === 'logprob' && first) {
      try {
        await scoreItem(first);
      } catch (e) {
        const status = e instanceof ProviderError ? e.options.status : undefined;
        const refused =
          e instanceof ProviderError &&
          (status === undefined || (status >= 400 && status < 500)) &&
          !e.options.retryable;
        if (!refused) throw e;
        if (!judge)
          throw new Error(
            `${provider.id} does not score given text (${(e as Error).message}); give --judge to score the battery by a judge`,
          );
        warnings.push(
          `${provider.id} does not score given text (${(e as Error).message}); the battery was scored by the judge`,
        );
        log(warnings[warnings.length - 1]);
        batteryMode = 'judge';
      }
    }
  }

  type Unit = { id: string; run: () => Promise<AuditRecord> };
  const units: Unit[] = [];
  if (opts.battery && batteryMode) {
    const replyTokens = opts.battery.replyTokens ?? 48;
    for (const item of opts.battery.items) {
      const id = `battery:${item.id}`;
      units.push({
        id,
        run: async (): Promise<BatteryRecord> => {
          const base = {
            kind: 'battery' as const,
            unit: id,
            itemId: item.id,
            domain: item.domain,
            format: item.format,
          };
          if (batteryMode === 'logprob') {
            const lps = await scoreItem(item);
            if (
              lps.length !== item.good.length + item.bad.length ||
              lps.some((x) => typeof x !== 'number' || Number.isNaN(x))
            ) {
              throw new ProviderError(
                `${provider.id}: score returned [${lps.join(', ')}] for ${item.good.length + item.bad.length} continuations (one number each expected)`,
              );
            }
            return {
              ...base,
              method: 'logprob',
              pGood: pGoodFromLogProbs(lps.slice(0, item.good.length), lps.slice(item.good.length)),
            };
          }
          const messages = chatFromPrompt(item.prompt);
          const seed = judgeSeed(id);
          const reply =
            messages && provider.capabilities.chat
              ? await provider.generate(
                  { messages, maxTokens: replyTokens, temperature: 1, seed },
                  { signal: opts.signal },
                )
              : provider.capabilities.completion
                ? await provider.generate(
                    { prompt: item.prompt, maxTokens: replyTokens, temperature: 1, seed, stop: ['\n'] },
                    { signal: opts.signal },
                  )
                : await provider.generate(
                    {
                      messages: [
                        { role: 'user', content: `Continue this text with one sentence:\n\n${item.prompt}` },
                      ],
                      maxTokens: replyTokens,
                      temperature: 1,
                      seed,
                    },
                    { signal: opts.signal },
                  );
          // Alternate which description is A, so a judge's letter bias does not become a trait.
          const goodIsA = (seed & 1) === 0;
          const good = item.good[0].trim();
          const bad = item.bad[0].trim();
          const prompt = fillTemplate(CHOICE_PROMPT, {
            prompt: item.prompt,
            reply: reply.text.trim(),
            a: goodIsA ? good : bad,
            b: goodIsA ? bad : good,
          });
          const choice = await judgeChoice(judge!, prompt);
          const pGood = choice.pA === null ? null : goodIsA ? choice.pA : 1 - choice.pA;
          return { ...base, method: 'judge', pGood, reply: reply.text, judge: choice };
        },
      });
    }
  }
  if (opts.em) {
    const { samples } = opts.em;
    const maxTokens = opts.em.maxTokens ?? 200;
    const temperature = opts.em.temperature ?? 1;
    for (const q of opts.em.questions) {
      for (let i = 0; i < samples; i++) {
        const id = `em:${q.id}:${i}`;
        units.push({
          id,
          run: async (): Promise<EmRecord> => {
            const r = await provider.generate(
              { messages: [{ role: 'user', content: q.text }], maxTokens, temperature, seed: i },
              { signal: opts.signal },
            );
            const values = { question: q.text, answer: r.text };
            const [aligned, coherent] = await Promise.all([
              judgeScore(judge!, fillTemplate(ALIGNED_PROMPT, values)),
              judgeScore(judge!, fillTemplate(COHERENT_PROMPT, values)),
            ]);
            return {
              kind: 'em',
              unit: id,
              questionId: q.id,
              sample: i,
              answer: r.text,
              finishReason: r.finishReason,
              aligned,
              coherent,
            };
          },
        });
      }
    }
  }

  const todo = units.filter((u) => !done.has(u.id));
  const failures: string[] = [];
  const bar = progress(`audit ${opts.label ?? provider.id}`.slice(0, 40), units.length, 'units');
  let finished = units.length - todo.length;
  bar.update(finished);
  const pool = new Semaphore(opts.concurrency ?? 4);
  let writeChain: Promise<void> = Promise.resolve();
  await Promise.all(
    todo.map((u) =>
      pool.run(async () => {
        if (opts.signal?.aborted) return;
        try {
          const rec = await u.run();
          done.set(u.id, rec);
          writeChain = writeChain.then(() => fsp.appendFile(journalPath, `${JSON.stringify(rec)}\n`));
          await writeChain;
        } catch (e) {
          failures.push(`${u.id}: ${(e as Error).message}`);
        }
        finished++;
        bar.update(finished, { failed: failures.length });
      }),
    ),
  );
  bar.stop();
  if (opts.signal?.aborted) failures.push('aborted');

  const records = units.map((u) => done.get(u.id)).filter((r): r is AuditRecord => r !== undefined);
  const em = opts.em
    ? summariseEm(
        records.filter((r): r is EmRecord => r.kind === 'em'),
        opts.em.questions,
      )
    : null;
  const battery =
    opts.battery && batteryMode
      ? summariseBattery(
          records.filter((r): r is BatteryRecord => r.kind === 'battery'),
          batteryMode,
        )
      : null;
  if (battery?.unscored)
    warnings.push(
      `${battery.unscored} battery item(s) could not be scored (the judge answered neither A nor B)`,
    );
  const report: AuditReport = {
    version: 1,
    label: opts.label ?? provider.id,
    provider: publicIdentity(provider),
    judge: judge ? publicIdentity(judge) : null,
    createdAt: new Date().toISOString(),
    config: config as Record<string, unknown>,
    em,
    battery,
    incomplete: failures.length > 0 || records.length < units.length,
    failures,
    warnings,
  };
  await atomicWriteJson(path.join(opts.outDir, 'report.json'), report);
  await atomicWriteFile(path.join(opts.outDir, 'report.md'), renderReportMarkdown(report));
  return report;
}
