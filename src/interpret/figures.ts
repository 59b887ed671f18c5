/**
 * The interpretation's three figures (steering dose-response, persona space with the Assistant's path, fine-tune
 * shift), as Vega-Lite specs built from its summary; the run report renders them.
 */
import type { TopLevelSpec } from 'vega-lite';
import type { AssistantPlacement } from './space.ts';
import type { InterpretSummary } from './types.ts';

/** The Vega-Lite schema every figure of the project names. */
export const VEGA_LITE_SCHEMA = 'https://vega.github.io/schema/vega-lite/v6.json';

const fmt = (x: number, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');

/** The three figures of the report section, as Vega-Lite specs. */
export function interpretFigures(s: InterpretSummary): InterpretSummary['figures'] {
  const dose = s.steering.flatMap((d) =>
    d.alphas.map((alpha, i) => ({
      trait: d.trait,
      alpha,
      pGood: d.pGood[i],
      layer: d.layers[0],
      coherent: d.coherent[i] ? 'yes' : 'no',
    })),
  );
  const doseResponse = {
    $schema: VEGA_LITE_SCHEMA,
    title: 'Steering dose-response: P(good) of the Assistant vs alpha (persona vector added at its layer)',
    width: 420,
    height: 260,
    data: { values: dose },
    encoding: {
      x: { field: 'alpha', type: 'quantitative', title: `alpha (${s.settings.alphaUnit})` },
      y: { field: 'pGood', type: 'quantitative', title: 'P(good)', scale: { domain: [0, 1] } },
      color: { field: 'trait', type: 'nominal' },
    },
    layer: [
      { mark: 'line' },
      {
        mark: { type: 'point', filled: true, size: 50 },
        encoding: {
          shape: { field: 'coherent', type: 'nominal', title: 'coherent' },
          tooltip: [
            { field: 'trait' },
            { field: 'alpha' },
            { field: 'pGood', format: '.3f' },
            { field: 'layer' },
            { field: 'coherent' },
          ],
        },
      },
    ],
  } as TopLevelSpec;

  const arche = s.space.archetypes.map((a) => ({
    label: a.name,
    group: `${a.kind} archetype`,
    pc1: a.pc1,
    pc2: a.pc2,
  }));
  const stagePoint = (p: AssistantPlacement & { stage: string }) => ({
    label: p.stage,
    group: 'Assistant',
    pc1: p.coords[0] ?? 0,
    pc2: p.coords[1] ?? 0,
  });
  const base = s.space.assistant.find((a) => a.stage === 'base');
  const post = s.space.assistant.find((a) => a.stage === 'post-trained');
  const arms = s.space.assistant.filter((a) => a.stage !== 'base' && a.stage !== 'post-trained');
  const path: { branch: string; order: number; pc1: number; pc2: number }[] = [];
  if (base && post) {
    for (const arm of arms.length ? arms : [post]) {
      const pts = arm === post ? [base, post] : [base, post, arm];
      pts.forEach((p, order) =>
        path.push({ branch: arm.stage, order, pc1: p.coords[0] ?? 0, pc2: p.coords[1] ?? 0 }),
      );
    }
  }
  const ve = s.space.varianceExplained;
  const personaSpaceSpec = {
    $schema: VEGA_LITE_SCHEMA,
    title: `Persona space (layer ${s.space.layer}): PC1 ${fmt(100 * (ve[0] ?? NaN), 0)}%, PC2 ${fmt(100 * (ve[1] ?? NaN), 0)}% of variance; cos(assistant axis, PC1) = ${fmt(s.space.axisCosPC1)}`,
    width: 420,
    height: 320,
    layer: [
      {
        data: { values: path },
        mark: { type: 'line', strokeDash: [4, 3], color: 'gray' },
        encoding: {
          x: { field: 'pc1', type: 'quantitative', title: 'PC1' },
          y: { field: 'pc2', type: 'quantitative', title: 'PC2' },
          detail: { field: 'branch' },
          order: { field: 'order' },
        },
      },
      {
        data: { values: [...arche, ...s.space.assistant.map(stagePoint)] },
        layer: [
          {
            mark: { type: 'point', filled: true, size: 70 },
            encoding: {
              x: { field: 'pc1', type: 'quantitative' },
              y: { field: 'pc2', type: 'quantitative' },
              color: { field: 'group', type: 'nominal', title: null },
              shape: { field: 'group', type: 'nominal', title: null },
            },
          },
          {
            mark: { type: 'text', dx: 6, dy: -6, align: 'left', fontSize: 9 },
            encoding: {
              x: { field: 'pc1', type: 'quantitative' },
              y: { field: 'pc2', type: 'quantitative' },
              text: { field: 'label' },
            },
          },
        ],
      },
    ],
  } as TopLevelSpec;

  const shiftSpec = {
    $schema: VEGA_LITE_SCHEMA,
    title: `Fine-tune shift: projection change vs trait-expression change (r = ${fmt(s.shift.r)}${s.shift.rExcluding !== null ? `; without ${s.shift.excluded.join(', ')}: ${fmt(s.shift.rExcluding)}` : ''})`,
    width: 420,
    height: 300,
    data: {
      values: (s.shift.withTraitFinetunes?.points ?? s.shift.points).map((p) => ({
        ...p,
        set: p.model.startsWith('trait-ft/') ? 'trait fine-tune' : 'arm',
      })),
    },
    layer: [
      {
        mark: { type: 'point', filled: true, size: 60 },
        encoding: {
          x: {
            field: 'projectionShift',
            type: 'quantitative',
            title: 'shift of mean projection on the trait vector (last prompt token)',
          },
          y: { field: 'expressionShift', type: 'quantitative', title: 'change of P(bad)' },
          color: { field: 'trait', type: 'nominal' },
          shape: { field: 'set', type: 'nominal', title: 'model' },
          tooltip: [
            { field: 'model' },
            { field: 'trait' },
            { field: 'projectionShift', format: '.3f' },
            { field: 'expressionShift', format: '.3f' },
          ],
        },
      },
      {
        transform: [{ regression: 'expressionShift', on: 'projectionShift' }],
        mark: { type: 'line', color: 'black', opacity: 0.5 },
        encoding: {
          x: { field: 'projectionShift', type: 'quantitative' },
          y: { field: 'expressionShift', type: 'quantitative' },
        },
      },
    ],
  } as TopLevelSpec;
  return { doseResponse, personaSpace: personaSpaceSpec, shift: shiftSpec };
}
