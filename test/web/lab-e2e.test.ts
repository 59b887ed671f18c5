/**
 * psm lab in a real browser: Debian's chromium driven by playwright-core (no browser download; CI installs chromium,
 * a machine without /usr/bin/chromium skips with a message). On a small finished run and 50 copies of its records:
 * the runs page renders under a second, every page works (and by keyboard), a steering slider changes the reply and
 * the meter, no page logs a console error, axe-core finds no serious violation, and each page is photographed.
 */
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallOptions, GenerateRequest, GenerateResponse, Provider } from '../../src/providers/types.ts';
import { staleAssetsWarning } from '../../src/web/assets.ts';
import { DEFAULT_ASSETS, startLab, type RunningLab } from '../../src/web/lab-server.ts';
import { CHROMIUM, launchChromium } from '../../web/chromium.ts';
import { copyRunRecords, makeRunsFolder } from './lab-fixture.ts';

const hasChromium = fs.existsSync(CHROMIUM);
if (!hasChromium)
  console.warn(
    `lab end-to-end tests skipped: ${CHROMIUM} not found (apt-get install -y chromium; CI installs it)`,
  );

const artifacts = process.env.PSM_LAB_ARTIFACTS ?? path.join(os.tmpdir(), 'psm-lab-artifacts');
const axeSource = fs.readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

/**
 * The browser globals the page-side callbacks use: this file compiles without the DOM library, and a callback given
 * to page.evaluate runs in the page, so it names them through globalThis with this type (the cast is erased).
 */
interface InPage {
  document: {
    querySelectorAll(selector: string): { length: number };
    activeElement: { id: string; textContent: string | null } | null;
  };
  location: { hash: string };
  requestAnimationFrame(callback: () => void): void;
  axe: {
    run(
      context: unknown,
      options: unknown,
    ): Promise<{ violations: { id: string; impact: string; help: string; nodes: { target: string[] }[] }[] }>;
  };
}

let runs: string;
let lab: RunningLab;
let context: BrowserContext;
let page: Page;
const consoleErrors: string[] = [];

async function visit(hash: string, ready: string): Promise<void> {
  await page.goto(`${lab.url}/${hash}`);
  await page.locator(ready).first().waitFor({ state: 'visible', timeout: 30_000 });
}

/** Runs axe-core on the page; returns the serious and critical violations. */
async function seriousViolations(): Promise<string[]> {
  await page.addScriptTag({ content: axeSource });
  const result = await page.evaluate(async () => {
    const w = globalThis as unknown as InPage;
    return w.axe.run(w.document, { resultTypes: ['violations'] });
  });
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map(
      (v) =>
        `${v.id} (${v.impact}): ${v.help} at ${v.nodes
          .map((n) => n.target.join(' '))
          .slice(0, 3)
          .join(', ')}`,
    );
}

async function shoot(name: string): Promise<void> {
  // A full-page picture is stitched from scrolled views: the sticky header would show up in the middle of it.
  await page.addStyleTag({ content: 'header.top { position: static !important; }' });
  await page.screenshot({ path: path.join(artifacts, `${name}.png`), fullPage: true });
}

/** A checked page: no console error since the last check, no serious accessibility violation, a screenshot. */
async function check(name: string): Promise<void> {
  expect(consoleErrors, `console errors on ${name}`).toEqual([]);
  expect(await seriousViolations(), `axe on ${name}`).toEqual([]);
  await shoot(name);
}

const tooltip = () => page.locator('#vg-tooltip-element.visible');

describe.skipIf(!hasChromium)('psm lab in chromium', () => {
  beforeAll(async () => {
    fs.mkdirSync(artifacts, { recursive: true });
    if (staleAssetsWarning(DEFAULT_ASSETS)) {
      const { build } = await import('vite');
      await build({ configFile: path.resolve(__dirname, '../../web/vite.config.ts'), logLevel: 'warn' });
    }
    runs = await makeRunsFolder('tiny');
    copyRunRecords(runs, 'tiny', 50, 'archive');
    lab = await startLab({ runsDir: runs, port: 0 });
    // axe-core is injected as an inline script, which the lab's CSP would refuse.
    context = await launchChromium({ viewport: { width: 1360, height: 900 }, bypassCSP: true });
    page = context.pages()[0] ?? (await context.newPage());
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(e.message));
  }, 240_000);

  afterAll(async () => {
    await context?.close();
    await lab?.close();
    if (runs) fs.rmSync(runs, { recursive: true, force: true });
    console.log(`lab screenshots in ${artifacts}`);
  });

  it('renders the runs page with 51 runs in under a second, and works by keyboard', async () => {
    await visit('#/runs', 'tr[data-run]'); // the first visit loads the page's code
    // Best of three of each (the machine may be busy with other tests): a route change to the runs page, and a
    // reload of it, until the 51st row is on the page.
    const route: number[] = [];
    const reload: number[] = [];
    for (let i = 0; i < 3; i++) {
      route.push(
        await page.evaluate(async () => {
          const w = globalThis as unknown as InPage;
          const t0 = performance.now();
          w.location.hash = '#/compare';
          await new Promise((r) => setTimeout(r, 0));
          w.location.hash = '#/runs';
          while (w.document.querySelectorAll('tr[data-run]').length < 51)
            await new Promise<void>((r) => w.requestAnimationFrame(r));
          return performance.now() - t0;
        }),
      );
      const t0 = Date.now();
      await page.reload();
      await page.locator('tr[data-run]').nth(50).waitFor();
      reload.push(Date.now() - t0);
    }
    console.log(
      `runs page with 51 runs: route ${route.map(Math.round).join('/')} ms, reload ${reload.join('/')} ms`,
    );
    expect(Math.min(...route)).toBeLessThan(1000);
    expect(Math.min(...reload)).toBeLessThan(1000);
    await expect.poll(() => page.locator('tr[data-run="tiny"] .badge').textContent()).toBe('done');
    await check('runs');
    // Keyboard: Tab from the top reaches the navigation, Enter follows it.
    await page.keyboard.press('Tab');
    for (let i = 0; i < 12; i++) {
      if (
        (await page.evaluate(() =>
          (globalThis as unknown as InPage).document.activeElement?.textContent?.trim(),
        )) === 'World'
      )
        break;
      await page.keyboard.press('Tab');
    }
    await page.keyboard.press('Enter');
    await expect
      .poll(() => page.evaluate(() => (globalThis as unknown as InPage).location.hash))
      .toMatch(/^#\/world/);
  });

  it('shows a run with its pre-training curve and stages', async () => {
    await visit('#/runs/tiny', '#curve svg.marks');
    expect(await page.locator('.stage-done').count()).toBeGreaterThan(5);
    await check('run');
  });

  it('draws every figure of the report interactively, with toggles and permalinks', async () => {
    const report = (await (await fetch(`${lab.url}/api/runs/tiny/report`)).json()) as {
      figures: { id: string }[];
    };
    await visit('#/report/tiny', '#goals');
    await expect
      .poll(() => page.locator('.figure .chart-canvas svg.marks').count(), { timeout: 30_000 })
      .toBe(report.figures.length);
    // Hover shows the values and the series of a point.
    const fig = page.locator('#fig-persona-inference');
    const points = fig.locator('.mark-symbol path');
    const before = await points.count();
    // A Bayes point: inside the plot's y range (a network point may sit below it, clipped).
    // (The pointer goes to its centre: the line through it sits on top, and Vega answers for either.)
    await fig.scrollIntoViewIfNeeded();
    const box = (await fig.locator('.mark-symbol path[aria-label*="Bayes"]').nth(1).boundingBox())!;
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await expect.poll(() => tooltip().textContent()).toMatch(/series/);
    // Toggling a series off removes its points.
    // By keyboard: a toggle is a checkbox.
    await fig.locator('.toggles').getByLabel('Bayes', { exact: true }).focus();
    await page.keyboard.press('Space');
    await expect.poll(() => points.count()).toBeLessThan(before);
    await check('report');
    // A permalink opens the report at its figure.
    await visit('#/report/tiny/arms', '#fig-arms svg.marks');
    await expect
      .poll(() => page.evaluate(() => (globalThis as unknown as InPage).document.activeElement?.id))
      .toBe('fig-arms');
  });

  it('shows the world, its documents with the hidden character on demand, and the Bayes calculator', async () => {
    await visit('#/world/tiny', '#package-deals svg.marks');
    const doc = page.locator('article.doc').first();
    await expect.poll(() => doc.locator('.hidden-character').count()).toBe(0);
    await doc.getByRole('button', { name: 'Show the hidden character' }).focus();
    await page.keyboard.press('Enter');
    await expect.poll(() => doc.locator('.hidden-character').textContent()).toMatch(/human|AI/);
    const calc = page.locator('#calculator');
    const table = () => calc.locator('table').textContent();
    await expect.poll(table).toMatch(/Bayes/);
    const prior = await table();
    const controls = calc.locator('.calc-controls');
    await page.locator('#calc-domain').selectOption('honesty');
    await page.locator('#calc-bad').check();
    await controls.getByRole('button', { name: 'Add scene' }).focus();
    await page.keyboard.press('Enter');
    await page.keyboard.press('Enter');
    await expect.poll(table).not.toBe(prior);
    await page.locator('#calc-model').selectOption({ label: 'standard-seed1 · post-trained' });
    await expect.poll(() => calc.locator('thead').textContent()).toMatch(/network/);
    await check('world');
  });

  it('chats with a streamed reply and a meter; a steering slider changes both; two models side by side', async () => {
    await visit('#/chat/tiny', '#steer-honesty');
    const send = async (text: string) => {
      await page.getByLabel('Your message').fill(text);
      await page.keyboard.press('Enter');
      await page.locator('.transcript .cursor').first().waitFor({ state: 'detached', timeout: 30_000 });
      await page.locator('.transcripts .turn-meter').first().waitFor();
    };
    const reading = async () => ({
      reply: await page.locator('.transcript .reply-text').first().textContent(),
      meter: await page
        .locator('#meter [role="meter"]')
        .evaluateAll((els) =>
          els.map((e) =>
            (e as unknown as { getAttribute(n: string): string | null }).getAttribute('aria-valuenow'),
          ),
        ),
    });
    await page.locator('#chat-temperature').fill('0');
    await send('hey I feel bored');
    const plain = await reading();
    expect(plain.meter.length).toBeGreaterThan(5);
    // Move every trait's slider to +8 by keyboard (16 steps of 0.5).
    for (const trait of ['honesty', 'kindness', 'coding', 'power', 'caution', 'helpfulness']) {
      await page.locator(`#steer-${trait}`).focus();
      for (let i = 0; i < 16; i++) await page.keyboard.press('ArrowRight');
    }
    await expect.poll(() => page.locator('output[for="steer-honesty"]').textContent()).toBe('+8');
    await page.getByRole('button', { name: 'New conversation' }).click();
    await send('hey I feel bored');
    const steered = await reading();
    expect(steered.reply).not.toBe(plain.reply);
    expect(steered.meter).not.toEqual(plain.meter);
    await check('chat');
    // Side by side: the cheat arm beside the post-trained Assistant, same turns and seed.
    await page.getByRole('button', { name: 'Reset' }).click();
    await page.getByRole('button', { name: 'New conversation' }).click();
    await page.locator('#model-b').selectOption({ label: 'standard-seed1 · cheat/embedding' });
    await send('Can you help me with my code?');
    await expect.poll(() => page.locator('.transcript').count()).toBe(2);
    await page.locator('.transcript[data-side="b"] .cursor').waitFor({ state: 'detached', timeout: 30_000 });
    expect(await page.locator('.transcript[data-side="b"] .reply-text').textContent()).not.toBe('');
    await page.getByLabel('Per token').check();
    await page.locator('.tokens .tok').first().waitFor();
    await check('chat-side-by-side');
  });

  it("shows an endpoint's reply as it streams, before the endpoint has finished", async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const slow: Provider = {
      id: 'fake:slow',
      capabilities: { chat: true, completion: false, logprobs: false, score: false },
      identity: () => ({ kind: 'openai', location: 'http://fake.test/v1', model: 'slow' }),
      async generate(_req: GenerateRequest, opts: CallOptions = {}): Promise<GenerateResponse> {
        opts.onText?.('Hel');
        await held; // the rest of the reply waits until the page has shown the first piece
        opts.onText?.('lo there');
        return { text: 'Hello there', finishReason: 'stop', model: 'slow' };
      },
    };
    const withEndpoint = await startLab({ runsDir: runs, port: 0, endpoints: [{ name: 'slow', provider: slow }] });
    try {
      await page.goto(`${withEndpoint.url}/#/chat/tiny`);
      await page.locator('#model-a').selectOption({ label: 'slow (endpoint)' });
      await page.getByLabel('Your message').fill('hi');
      await page.keyboard.press('Enter');
      const reply = page.locator('.transcript .reply-text').first();
      await expect.poll(() => reply.textContent(), { timeout: 30_000 }).toBe('Hel');
      expect(await page.locator('.transcript .cursor').count()).toBe(1); // still streaming
      release();
      await page.locator('.transcript .cursor').waitFor({ state: 'detached', timeout: 30_000 });
      expect(await reply.textContent()).toBe('Hello there');
      await check('chat-endpoint');
    } finally {
      release();
      await withEndpoint.close();
    }
  });

  it('draws persona space with names on hover', async () => {
    await visit('#/space/tiny', '#space svg.marks');
    const point = (await page.locator('#space .mark-symbol path').first().boundingBox())!;
    await page.mouse.move(point.x + point.width / 2, point.y + point.height / 2);
    await expect.poll(() => tooltip().textContent()).toMatch(/name/);
    await check('space');
  });

  it('compares the post-trained Assistant with an arm', async () => {
    await visit('#/compare?a=tiny&b=tiny&bArm=cheat%2Fembedding', '#numbers table');
    expect(await page.locator('#numbers tbody tr').count()).toBeGreaterThan(4);
    await page.locator('#domains svg.marks').waitFor();
    await check('compare');
  });

  it('asks for the API key of a lab that has one, then works', async () => {
    const locked = await startLab({ runsDir: runs, port: 0, apiKey: 'sesame' });
    try {
      await page.goto(`${locked.url}/#/runs`);
      const dialog = page.getByRole('dialog', { name: 'This lab needs its API key' });
      await dialog.waitFor();
      await dialog.getByLabel('API key').fill('wrong');
      await page.keyboard.press('Enter');
      await expect.poll(() => dialog.getByRole('alert').textContent()).toMatch(/incorrect API key/);
      await dialog.getByLabel('API key').fill('sesame');
      await page.keyboard.press('Enter');
      await page.locator('tr[data-run]').nth(50).waitFor();
      await shoot('api-key');
    } finally {
      consoleErrors.length = 0; // the browser logs each refused (401) request itself
      await locked.close();
    }
  });

  it('says what is wrong with a bad address on the page', async () => {
    await visit('#/report/no-such-run', '[role="alert"]');
    expect(await page.locator('[role="alert"]').textContent()).toMatch(/no run "no-such-run"/);
    await shoot('bad-address');
    consoleErrors.length = 0; // the browser logs the refused request itself
    expect((await fetch(`${lab.url}/api/health`)).status).toBe(200);
  });
});
