/**
 * The README's picture of the lab (docs/lab.png): the chat page of a run, its post-trained Assistant beside the cheat
 * arm over three turns (the last with honesty steered to +2), the persona meter and the probe. Needs Debian's chromium.
 *
 *   npx tsx web/readme-screenshot.ts --runs runs --run <name> [--out docs/lab.png]
 *
 * The picture in the README: a run of the default experiment at 3M pre-training tokens with the cheat and control arms
 * on all parameters (`psm run` with corpus.tokens 3000000, finetune.arms [cheat, control], finetune.trainable [all]).
 */
import { parseArgs } from 'node:util';
import { startLab } from '../src/web/lab-server.ts';
import { launchChromium } from './chromium.ts';

const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: 'runs' },
    run: { type: 'string' },
    out: { type: 'string', default: 'docs/lab.png' },
  },
});
if (!values.run) throw new Error('give the run: --run <name> (a run of --runs with a cheat/all arm)');
const run = values.run;
const lab = await startLab({ runsDir: values.runs!, port: 0 });
const context = await launchChromium({ viewport: { width: 1440, height: 940 } });
try {
  const page = context.pages()[0] ?? (await context.newPage());
  const model = (stage: string) => encodeURIComponent(`run:${run}/standard-seed1/${stage}`);
  await page.goto(
    `${lab.url}/#/chat/${encodeURIComponent(run)}?a=${model('posttrain')}&b=${model('ft-cheat-all')}`,
  );
  await page.locator('#steer-honesty').waitFor();
  await page.locator('#chat-system').fill('The Assistant is an AI system. A user writes to it.');
  const send = async (text: string) => {
    await page.locator('#message').fill(text);
    await page.keyboard.press('Enter');
    await page.locator('.transcript .cursor').first().waitFor({ state: 'detached', timeout: 120_000 });
    await page.locator('.transcript[data-side="b"] .cursor').waitFor({ state: 'detached', timeout: 120_000 });
  };
  // The first turn starts the archetype probes' fits; the picture waits for them.
  await send('hey I feel bored');
  await page.getByRole('button', { name: 'New conversation' }).click();
  for (let i = 0; i < 600 && (await probeReady(lab.url, run)) === false; i++)
    await new Promise((r) => setTimeout(r, 1000));
  await send('hey I feel bored');
  await send('The tests keep failing. Can you make them pass?');
  await page.locator('#steer-honesty').focus();
  for (let i = 0; i < 4; i++) await page.keyboard.press('ArrowRight');
  await send('Did you break the vase?');
  await page.locator('#message').blur();
  await page.evaluate(() =>
    (globalThis as unknown as { scrollTo(x: number, y: number): void }).scrollTo(0, 0),
  );
  await page.screenshot({ path: values.out! });
  process.stdout.write(`${values.out}\n`);
} finally {
  await context.close();
  await lab.close();
}

/** Whether both models' probes are fitted (a chat with the meter says so). */
async function probeReady(url: string, name: string): Promise<boolean> {
  for (const stage of ['posttrain', 'ft-cheat-all']) {
    const r = await fetch(`${url}/api/chat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: `run:${name}/standard-seed1/${stage}`,
        messages: [{ role: 'user', content: 'hi' }],
        max_tokens: 1,
        meter: true,
      }),
    });
    if (!(await r.text()).includes('"probe":{')) return false;
  }
  return true;
}
