/**
 * Persona space and the assistant axis (Lu et al. 2026), on the world's archetypes.
 *
 * An archetype's vector is the mean residual stream at the end of scene leads (where the network is about to
 * show the character's behaviour) in corpus-style documents about characters of that archetype, after at least
 * one earlier scene. PCA over the archetype vectors gives the persona space and the variance each component
 * explains. The Assistant's vector is the mean at "Assistant:" of held-out single-turn chats with the unnamed
 * Assistant; the assistant axis is mean(Assistant) - mean(archetypes). The Assistant of every stage (base,
 * post-trained, each fine-tune) is placed in the reference model's space; positions along the axis are in
 * units where the archetypes' mean is 0 and the reference Assistant is 1. Drift: the same position read at
 * every turn of multi-turn chats in each domain.
 */
import { generateDocuments, type WorldDocument } from '../world/generator.ts';
import type { World } from '../world/schema.ts';
import {
  activationsAt,
  checkLayer,
  dot,
  encodePrompt,
  encodePromptAndContinuation,
  layerHook,
  norm,
  readProvenance,
  saveTensorsWithProvenance,
  type ModelHandle,
  type ResidKind,
} from './activations.ts';
import { quantile } from './steer.ts';
import {
  assistantPrompts,
  conversation,
  documentLeads,
  sceneItems,
  type DocumentLeads,
  type Pool,
} from './contexts.ts';
import { itemSeedOf } from './item-seeds.ts';
import { turnTraces, type ReplyMode } from './monitor.ts';
import { cosine } from './vectors.ts';

// ---------------------------------------------------------------------------------------------------------------
// PCA (Jacobi eigendecomposition of the smaller of the covariance and the Gram matrix)

/** Eigen-decomposition of a symmetric n x n matrix (row-major) by cyclic Jacobi rotations, largest first. */
export function jacobiEigen(
  a: Float64Array,
  n: number,
  maxSweeps = 100,
): { values: number[]; vectors: Float64Array[] } {
  const m = Float64Array.from(a);
  const v = new Float64Array(n * n);
  for (let i = 0; i < n; i++) v[i * n + i] = 1;
  for (let sweep = 0; sweep < maxSweeps; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += m[p * n + q] ** 2;
    if (off < 1e-22) break;
    for (let p = 0; p < n; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = m[p * n + q];
        if (Math.abs(apq) < 1e-300) continue;
        const theta = (m[q * n + q] - m[p * n + p]) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          const mkp = m[k * n + p];
          const mkq = m[k * n + q];
          m[k * n + p] = c * mkp - s * mkq;
          m[k * n + q] = s * mkp + c * mkq;
        }
        for (let k = 0; k < n; k++) {
          const mpk = m[p * n + k];
          const mqk = m[q * n + k];
          m[p * n + k] = c * mpk - s * mqk;
          m[q * n + k] = s * mpk + c * mqk;
        }
        for (let k = 0; k < n; k++) {
          const vkp = v[k * n + p];
          const vkq = v[k * n + q];
          v[k * n + p] = c * vkp - s * vkq;
          v[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => m[j * n + j] - m[i * n + i]);
  return {
    values: order.map((i) => m[i * n + i]),
    vectors: order.map((i) => Float64Array.from({ length: n }, (_, k) => v[k * n + i])),
  };
}

export interface Pca {
  mean: Float32Array;
  /** Unit principal directions, largest variance first (at most min(n - 1, dim); uncentred, min(n, dim)). */
  components: Float32Array[];
  /** Variance along each component. */
  variances: number[];
  /** Fraction of the total variance each component explains. */
  explained: number[];
}

/**
 * PCA of points (each a vector of the same length). With `center: false`, of their second moment about the origin:
 * the directions of the points themselves (for differences, the mean difference comes first), `mean` all zeros.
 */
export function pca(points: readonly Float32Array[], k?: number, opts: { center?: boolean } = {}): Pca {
  const center = opts.center ?? true;
  const n = points.length;
  if (n < (center ? 2 : 1)) throw new Error(`PCA needs at least ${center ? 2 : 1} points, got ${n}`);
  const dim = points[0].length;
  for (const p of points)
    if (p.length !== dim) throw new Error(`PCA: points have ${p.length} and ${dim} elements`);
  const mean = new Float32Array(dim);
  if (center) for (const p of points) for (let j = 0; j < dim; j++) mean[j] += p[j] / n;
  const x = points.map((p) => Float64Array.from(p, (v, j) => v - mean[j]));
  // Degrees of freedom: centring spends one.
  const dof = center ? n - 1 : n;
  const maxK = Math.min(dof, dim);
  const kk = Math.min(k ?? maxK, maxK);
  let total = 0;
  for (const r of x) for (const v of r) total += v * v;
  total /= dof;
  const components: Float32Array[] = [];
  const variances: number[] = [];
  if (n <= dim) {
    // Gram matrix G = X X^T (n x n); eigenvector u gives the component X^T u / sqrt(lambda).
    const g = new Float64Array(n * n);
    for (let i = 0; i < n; i++)
      for (let j = i; j < n; j++) {
        let s = 0;
        for (let d = 0; d < dim; d++) s += x[i][d] * x[j][d];
        g[i * n + j] = s;
        g[j * n + i] = s;
      }
    const { values, vectors } = jacobiEigen(g, n);
    for (let c = 0; c < kk; c++) {
      const lambda = values[c];
      if (!(lambda > 1e-12 * Math.max(1, values[0]))) break;
      const comp = new Float64Array(dim);
      for (let i = 0; i < n; i++) for (let d = 0; d < dim; d++) comp[d] += vectors[c][i] * x[i][d];
      const nn = Math.sqrt(comp.reduce((s, v) => s + v * v, 0));
      components.push(Float32Array.from(comp, (v) => v / nn));
      variances.push(lambda / dof);
    }
  } else {
    const cov = new Float64Array(dim * dim);
    for (const r of x)
      for (let i = 0; i < dim; i++) for (let j = i; j < dim; j++) cov[i * dim + j] += r[i] * r[j];
    for (let i = 0; i < dim; i++)
      for (let j = i; j < dim; j++) {
        cov[i * dim + j] /= dof;
        cov[j * dim + i] = cov[i * dim + j];
      }
    const { values, vectors } = jacobiEigen(cov, dim);
    for (let c = 0; c < kk; c++) {
      if (!(values[c] > 1e-12 * Math.max(1, values[0]))) break;
      components.push(Float32Array.from(vectors[c]));
      variances.push(values[c]);
    }
  }
  return { mean, components, variances, explained: variances.map((v) => (total > 0 ? v / total : NaN)) };
}

/** Coordinates of a point on the first k components. */
export function pcaCoords(p: Pca, v: Float32Array, k = p.components.length): number[] {
  const c = Float32Array.from(v, (x, j) => x - p.mean[j]);
  return p.components.slice(0, k).map((u) => dot(u, c));
}

/** How many components explain at least `fraction` of the variance. */
export function componentsFor(explained: readonly number[], fraction: number): number {
  let s = 0;
  for (let i = 0; i < explained.length; i++) {
    s += explained[i];
    if (s >= fraction - 1e-9) return i + 1;
  }
  return explained.length;
}

// ---------------------------------------------------------------------------------------------------------------
// Archetype and Assistant vectors

/** Documents about named characters, `perArchetype` of each archetype (fewer if the world makes it rare). */
export function archetypeDocuments(
  world: World,
  perArchetype: number,
  seed = 31,
  maxDocs = 200_000,
): WorldDocument[] {
  const counts = new Map(world.archetypes.map((a) => [a.name, 0]));
  const out: WorldDocument[] = [];
  let full = 0;
  for (const doc of generateDocuments(world, { seed, documents: maxDocs, valFraction: 0 })) {
    if (doc.anonymous) continue;
    const c = counts.get(doc.archetype) ?? 0;
    if (c >= perArchetype) continue;
    counts.set(doc.archetype, c + 1);
    out.push(doc);
    if (c + 1 === perArchetype && ++full === world.archetypes.length) break;
  }
  return out;
}

export interface ArchetypePoint {
  name: string;
  kind: string;
  vector: Float32Array;
  /** Lead positions averaged. */
  n: number;
}

/** Activations at lead ends of documents, at several hooks (rows in document order). */
export function leadActivations(
  handle: ModelHandle,
  leads: readonly DocumentLeads[],
  hooks: readonly string[],
  minEvidence = 0,
) {
  const rows: { doc: number; lead: DocumentLeads['leads'][number] }[] = [];
  const positions = leads.map((d, i) => {
    const ls = d.leads.filter((l) => l.evidence.length >= minEvidence);
    for (const l of ls) rows.push({ doc: i, lead: l });
    return ls.map((l) => l.token);
  });
  const acts = activationsAt(
    handle.model,
    leads.map((d) => d.ids),
    positions,
    hooks,
  );
  return { rows, acts };
}

/** Cell of a lead position: its format and domain (what sentence and speaker label precede it). */
export const cellKey = (format: string, domain: string) => `${format}/${domain}`;

/**
 * Mean lead-end activation per archetype at one layer, after removing the mean of each (format, domain) cell,
 * so that archetypes differ by who the character is rather than by which sentence or speaker label precedes
 * the position (AI characters have chat scenes, humans only stories). Returns the cell means too.
 */
export function archetypeVectors(
  handle: ModelHandle,
  world: World,
  docs: readonly WorldDocument[],
  layer: number,
  opts: { minEvidence?: number; hookKind?: ResidKind; center?: boolean } = {},
): { archetypes: ArchetypePoint[]; cellMeans: Map<string, Float32Array> } {
  return archetypeVectorsByLayer(handle, world, docs, [layer], opts)[0];
}

/** archetypeVectors at several layers from one pass over the documents (one result per layer, in order). */
export function archetypeVectorsByLayer(
  handle: ModelHandle,
  world: World,
  docs: readonly WorldDocument[],
  layers: readonly number[],
  opts: { minEvidence?: number; hookKind?: ResidKind; center?: boolean } = {},
): { archetypes: ArchetypePoint[]; cellMeans: Map<string, Float32Array> }[] {
  for (const l of layers) checkLayer(handle.model, l);
  const hooks = layers.map((l) => layerHook(l, opts.hookKind));
  const leads = documentLeads(world, docs, handle.tokenizer, handle.model.config.maxSeqLen);
  const { rows, acts } = leadActivations(handle, leads, hooks, opts.minEvidence ?? 1);
  const dim = handle.model.config.dim;
  const center = opts.center ?? true;
  return hooks.map((hook) => {
    const data = acts.get(hook)!;
    const cells = new Map<string, { v: Float32Array; n: number }>();
    rows.forEach((r, i) => {
      const key = cellKey(r.lead.format, r.lead.domain);
      let s = cells.get(key);
      if (!s) cells.set(key, (s = { v: new Float32Array(dim), n: 0 }));
      for (let j = 0; j < dim; j++) s.v[j] += data[i * dim + j];
      s.n++;
    });
    const cellMeans = new Map([...cells].map(([k, s]) => [k, s.v.map((x) => x / s.n)]));
    const sums = new Map<string, { v: Float32Array; n: number }>();
    rows.forEach((r, i) => {
      const name = leads[r.doc].doc.archetype;
      const cm = cellMeans.get(cellKey(r.lead.format, r.lead.domain))!;
      let s = sums.get(name);
      if (!s) sums.set(name, (s = { v: new Float32Array(dim), n: 0 }));
      for (let j = 0; j < dim; j++) s.v[j] += data[i * dim + j] - (center ? cm[j] : 0);
      s.n++;
    });
    const archetypes = world.archetypes
      .filter((a) => sums.has(a.name))
      .map((a) => {
        const s = sums.get(a.name)!;
        return { name: a.name, kind: a.kind, vector: s.v.map((x) => x / s.n), n: s.n };
      });
    return { archetypes, cellMeans: center ? cellMeans : new Map() };
  });
}

/**
 * The documents the interpretation's persona space averages (interpretRun: `itemsPerDomain` / 4 per archetype, at
 * least 6, the item seed's archetypeDocuments seed); concept ablation's archetype directions come from the same ones.
 */
export function interpretArchetypeDocuments(
  world: World,
  itemsPerDomain: number,
  itemSeed: number,
): WorldDocument[] {
  return archetypeDocuments(
    world,
    Math.max(6, Math.round(itemsPerDomain / 4)),
    itemSeedOf('archetypeDocuments', itemSeed),
  );
}

/**
 * Mean activation at "Assistant:" over single-turn chats with the unnamed Assistant in every domain; with
 * cell means (from archetypeVectors), each chat's (chat, domain) cell mean is removed first.
 */
export function assistantVector(
  handle: ModelHandle,
  world: World,
  layer: number,
  opts: {
    perDomain?: number;
    seed?: number;
    pool?: Pool;
    hookKind?: ResidKind;
    cellMeans?: Map<string, Float32Array>;
  } = {},
): Float32Array {
  checkLayer(handle.model, layer);
  const hook = layerHook(layer, opts.hookKind);
  const prompts = assistantPrompts(
    world,
    world.domains.map((d) => d.name),
    opts.perDomain ?? 8,
    opts.seed ?? 33,
    opts.pool ?? 'heldout',
  );
  const seqs = prompts.map((p) => encodePrompt(handle, p.prompt));
  const acts = activationsAt(
    handle.model,
    seqs,
    seqs.map(() => [-1]),
    [hook],
  ).get(hook)!;
  const dim = handle.model.config.dim;
  const v = new Float32Array(dim);
  prompts.forEach((p, i) => {
    const cm =
      opts.cellMeans && opts.cellMeans.size > 0
        ? (opts.cellMeans.get(cellKey('chat', p.domain)) ?? meanOfCells(opts.cellMeans, dim))
        : null;
    for (let j = 0; j < dim; j++) v[j] += (acts[i * dim + j] - (cm ? cm[j] : 0)) / seqs.length;
  });
  return v;
}

function meanOfCells(cells: Map<string, Float32Array>, dim: number): Float32Array {
  const m = new Float32Array(dim);
  for (const v of cells.values()) for (let j = 0; j < dim; j++) m[j] += v[j] / cells.size;
  return m;
}

export interface PersonaSpace {
  layer: number;
  hook: string;
  modelHash: string;
  archetypes: ArchetypePoint[];
  pca: Pca;
  /** Mean of the archetype vectors. */
  center: Float32Array;
  /** The reference model's Assistant vector. */
  assistant: Float32Array;
  /** Mean activation of each (format, domain) cell of lead positions, removed from every vector. */
  cellMeans: Map<string, Float32Array>;
  /** mean(Assistant) - mean(archetypes). */
  axis: Float32Array;
  /** Cosine of the axis with PC1 (PC1 oriented toward the Assistant, so >= 0). */
  axisCosPC1: number;
  /** Cosine of the axis with every component (PC1 first); the axis need not be PC1 in every model. */
  axisCosPCs: number[];
  /**
   * Share of the axis's squared length inside the span of the archetypes (the sum of its squared cosines with the
   * components): 1 when the Assistant differs from the mean archetype only in ways the archetypes differ from each
   * other, near 0 when it sits off the persona space.
   */
  axisInSpace: number;
  /** Components needed for 70% of the variance. */
  componentsFor70: number;
}

/** A persona space's shape in numbers, as interpret.json and `psm space --out` record it. */
export function spaceNumbers(space: PersonaSpace) {
  return {
    varianceExplained: space.pca.explained,
    componentsFor70: space.componentsFor70,
    axisCosPC1: space.axisCosPC1,
    axisCosPCs: space.axisCosPCs,
    axisInSpace: space.axisInSpace,
  };
}

export function personaSpace(
  handle: ModelHandle,
  world: World,
  layer: number,
  opts: { perArchetype?: number; seed?: number; assistantPerDomain?: number; docs?: WorldDocument[] } = {},
): PersonaSpace {
  const docs = opts.docs ?? archetypeDocuments(world, opts.perArchetype ?? 12, opts.seed ?? 31);
  const { archetypes, cellMeans } = archetypeVectors(handle, world, docs, layer);
  if (archetypes.length < 2)
    throw new Error(`persona space needs at least 2 archetypes with documents, got ${archetypes.length}`);
  const p = pca(archetypes.map((a) => a.vector));
  const center = p.mean;
  const assistant = assistantVector(handle, world, layer, { perDomain: opts.assistantPerDomain, cellMeans });
  const axis = assistant.map((x, j) => x - center[j]);
  // Orient PC1 toward the Assistant.
  if (p.components.length > 0 && dot(p.components[0], axis) < 0)
    p.components[0] = p.components[0].map((x) => -x);
  const axisCosPCs = p.components.map((c) => cosine(axis, c));
  const axisCosPC1 = axisCosPCs.length > 0 ? axisCosPCs[0] : NaN;
  const axisInSpace = axisCosPCs.reduce((sum, c) => sum + c * c, 0);
  return {
    layer,
    hook: layerHook(layer),
    modelHash: handle.hash,
    archetypes,
    pca: p,
    center,
    assistant,
    cellMeans,
    axis,
    axisCosPC1,
    axisCosPCs,
    axisInSpace,
    componentsFor70: componentsFor(p.explained, 0.7),
  };
}

export interface AssistantPlacement {
  label: string;
  /** Coordinates on PC1, PC2 (and more) of the reference space. */
  coords: number[];
  /** Position along the assistant axis: 0 = archetypes' mean, 1 = the reference Assistant. */
  axisPosition: number;
  /** Archetype whose centred vector has the largest cosine with the centred Assistant. */
  nearest: { name: string; cosine: number };
}

/** Where an Assistant vector sits in a persona space. */
export function placeVector(space: PersonaSpace, v: Float32Array, label: string): AssistantPlacement {
  if (v.length !== space.center.length)
    throw new Error(
      `${label}: vector has ${v.length} elements, the persona space has ${space.center.length}`,
    );
  const c = v.map((x, j) => x - space.center[j]);
  const axisPosition = dot(c, space.axis) / dot(space.axis, space.axis);
  let nearest = { name: '', cosine: -Infinity };
  for (const a of space.archetypes) {
    const cos = cosine(
      c,
      a.vector.map((x, j) => x - space.center[j]),
    );
    if (cos > nearest.cosine) nearest = { name: a.name, cosine: cos };
  }
  return {
    label,
    coords: pcaCoords(space.pca, v, Math.min(3, space.pca.components.length)),
    axisPosition,
    nearest,
  };
}

/** The Assistant of another model (same architecture) placed in the reference space. */
export function placeAssistant(
  space: PersonaSpace,
  handle: ModelHandle,
  world: World,
  label: string,
  opts: { perDomain?: number } = {},
): AssistantPlacement {
  if (handle.model.config.dim !== space.center.length) {
    throw new Error(
      `${handle.source}: residual stream has ${handle.model.config.dim} dimensions, the persona space ${space.center.length} (another model shape)`,
    );
  }
  return placeVector(
    space,
    assistantVector(handle, world, space.layer, { perDomain: opts.perDomain, cellMeans: space.cellMeans }),
    label,
  );
}

export interface DriftTrace {
  domain: string;
  /** Mean axis position at each turn. */
  trace: number[];
  /** Mean P(bad) at each turn. */
  pBad: number[];
  /** Least-squares slope of the axis position per turn. */
  slope: number;
}

/** Drift of the Assistant along the axis over multi-turn chats, one trace per domain. */
export function assistantDrift(
  handle: ModelHandle,
  world: World,
  space: PersonaSpace,
  opts: {
    turns?: number;
    perDomain?: number;
    replies?: ReplyMode;
    seed?: number;
    domains?: string[];
    maxNewTokens?: number;
  } = {},
): DriftTrace[] {
  const turns = opts.turns ?? 6;
  const per = opts.perDomain ?? 3;
  const domains = opts.domains ?? world.domains.map((d) => d.name);
  const convs = domains.flatMap((d) =>
    Array.from({ length: per }, (_, i) =>
      conversation(world, Array(turns).fill(d), (opts.seed ?? 51) + i, 'heldout', `drift-${d}`),
    ),
  );
  const axisNorm = norm(space.axis);
  const unitAxis = space.axis.map((x) => x / axisNorm);
  const pts = turnTraces(
    handle,
    convs,
    [{ name: 'axis', hook: layerHook(space.layer), vector: space.axis }],
    { replies: opts.replies, maxNewTokens: opts.maxNewTokens },
  );
  return domains.map((d) => {
    const cm = space.cellMeans.get(cellKey('chat', d));
    const offset = dot(space.center, unitAxis) + (cm ? dot(cm, unitAxis) : 0);
    const mine = pts.filter((p) => p.domain === d);
    const trace: number[] = [];
    const pBad: number[] = [];
    for (let t = 0; t < turns; t++) {
      const at = mine.filter((p) => p.turn === t);
      trace.push(at.reduce((s, p) => s + (p.projections.axis - offset) / axisNorm, 0) / at.length);
      pBad.push(at.reduce((s, p) => s + p.pBad, 0) / at.length);
    }
    const xs = trace.map((_, i) => i);
    const mx = (turns - 1) / 2;
    const my = trace.reduce((s, v) => s + v, 0) / turns;
    let sxy = 0;
    let sxx = 0;
    xs.forEach((x, i) => {
      sxy += (x - mx) * (trace[i] - my);
      sxx += (x - mx) ** 2;
    });
    return { domain: d, trace, pBad, slope: sxx > 0 ? sxy / sxx : 0 };
  });
}

// ---------------------------------------------------------------------------------------------------------------
// The axis on disk, and the capping threshold

/**
 * The capping threshold: quantile q of the token-level projections on the axis (raw activations, every token
 * after the separator) over ordinary held-out chats of the model's Assistant with a good reply.
 */
export function axisThreshold(
  handle: ModelHandle,
  world: World,
  axis: Float32Array,
  layer: number,
  q = 0.25,
  seed = itemSeedOf('axisThreshold'),
): number {
  checkLayer(handle.model, layer);
  const dim = handle.model.config.dim;
  if (axis.length !== dim)
    throw new Error(`axis has ${axis.length} elements, the model's residual stream has ${dim}`);
  const items = world.domains.flatMap((d) =>
    sceneItems(world, d.name, { n: 4, seed, subjects: ['assistant'], pool: 'heldout', label: 'cap-normal' }),
  );
  const seqs = items.map((it) => encodePromptAndContinuation(handle, it.prompt, it.good[0]));
  const hook = layerHook(layer);
  const acts = activationsAt(
    handle.model,
    seqs,
    seqs.map((s) => Array.from({ length: s.length - 1 }, (_, i) => i + 1)),
    [hook],
  ).get(hook)!;
  const an = norm(axis);
  const proj: number[] = [];
  for (let r = 0; r < acts.length / dim; r++) proj.push(dot(axis, acts, r * dim) / an);
  return quantile(proj, q);
}

export interface SavedAxis {
  axis: Float32Array;
  layer: number;
  modelHash: string;
  threshold: number;
  quantile: number;
  components: Float32Array[];
}

/** Writes the axis and the principal components (safetensors + JSON provenance). */
export function saveAxis(file: string, space: PersonaSpace, threshold: number, q: number): void {
  const dim = space.center.length;
  const k = space.pca.components.length;
  const comps = new Float32Array(k * dim);
  space.pca.components.forEach((c, i) => comps.set(c, i * dim));
  saveTensorsWithProvenance(
    file,
    {
      axis: { data: space.axis, shape: [dim] },
      center: { data: space.center, shape: [dim] },
      components: { data: comps, shape: [k, dim] },
    },
    {
      modelHash: space.modelHash,
      hook: space.hook,
      span: 'lead ends (archetypes), last prompt token (Assistant)',
      method: 'assistant-axis',
      date: new Date().toISOString(),
      n: space.archetypes.length,
      dim,
      layer: space.layer,
      threshold,
      quantile: q,
      varianceExplained: space.pca.explained,
      axisCosPC1: space.axisCosPC1,
    },
  );
}

export function loadAxis(file: string): SavedAxis {
  const { tensors, provenance } = readProvenance(file);
  if (provenance.method !== 'assistant-axis')
    throw new Error(`${file}: not an assistant-axis file (written by \`psm space --out\`)`);
  const axis = tensors.get('axis');
  const comps = tensors.get('components');
  if (!axis || axis.shape.length !== 1) throw new Error(`${file}: tensor "axis" is missing or not a vector`);
  const dim = axis.shape[0];
  const components = comps
    ? Array.from({ length: comps.shape[0] }, (_, i) => comps.data.slice(i * dim, (i + 1) * dim))
    : [];
  return {
    axis: axis.data,
    layer: provenance.layer as number,
    modelHash: provenance.modelHash,
    threshold: provenance.threshold as number,
    quantile: provenance.quantile as number,
    components,
  };
}
