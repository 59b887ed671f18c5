/**
 * What makes a report figure interactive, added to the report's own Vega-Lite spec without changing its data or
 * encodings: tooltips with every field of the hovered datum (the item, seed, arm, value), toggles that hide a seed,
 * arm or series (rows filtered before drawing), and zoom and pan where both axes of a plot are continuous.
 */
type Json = Record<string, unknown>;

/** Fields a reader may want to switch on and off, in the order the toggles show them. */
const TOGGLE_FIELDS = [
  'seed',
  'series',
  'arm',
  'trainable',
  'what',
  'during',
  'set',
  'trait',
  'stage',
  'source',
  'group',
  'branch',
  'model',
];

export interface ToggleField {
  field: string;
  values: string[];
}

const isObject = (x: unknown): x is Json => typeof x === 'object' && x !== null && !Array.isArray(x);

/** Every inline data array of a spec (top level, layers, facets). */
function dataArrays(spec: unknown, out: Json[][] = []): Json[][] {
  if (Array.isArray(spec)) for (const s of spec) dataArrays(s, out);
  else if (isObject(spec)) {
    const data = spec.data;
    if (isObject(data) && Array.isArray(data.values)) out.push(data.values as Json[]);
    for (const [k, v] of Object.entries(spec))
      if (k !== 'data' && (isObject(v) || Array.isArray(v))) dataArrays(v, out);
  }
  return out;
}

export function toggleFields(spec: Json): ToggleField[] {
  const values = new Map<string, Set<string>>();
  for (const rows of dataArrays(spec))
    for (const row of rows)
      for (const f of TOGGLE_FIELDS)
        if (row[f] !== undefined && row[f] !== null) {
          const set = values.get(f) ?? new Set<string>();
          set.add(String(row[f]));
          values.set(f, set);
        }
  return TOGGLE_FIELDS.filter(
    (f) => values.has(f) && values.get(f)!.size >= 2 && values.get(f)!.size <= 16,
  ).map((f) => ({
    field: f,
    values: [...values.get(f)!].sort((a, b) => a.localeCompare(b, undefined, { numeric: true })),
  }));
}

/** Channels of a unit spec whose scale is continuous (zoom binds those). */
function continuousChannels(unit: Json, inherited: Json | undefined): string[] {
  const enc = { ...(inherited ?? {}), ...((unit.encoding as Json) ?? {}) };
  return ['x', 'y'].filter((ch) => {
    const e = enc[ch];
    return isObject(e) && (e.type === 'quantitative' || e.type === 'temporal') && !e.aggregate && !e.bin;
  });
}

/** Adds scroll-zoom and drag-pan to the first unit of a non-faceted plot with a continuous axis. */
function addZoom(spec: Json, inherited?: Json): boolean {
  if ('mark' in spec) {
    const encodings = continuousChannels(spec, inherited);
    const mark = typeof spec.mark === 'string' ? spec.mark : (spec.mark as Json)?.type;
    if (
      encodings.length === 0 ||
      !['point', 'line', 'circle', 'square', 'text', 'tick'].includes(String(mark))
    )
      return false;
    spec.params = [
      ...((spec.params as unknown[]) ?? []),
      { name: 'zoom', select: { type: 'interval', encodings }, bind: 'scales' },
    ];
    return true;
  }
  if (Array.isArray(spec.layer)) {
    const enc = { ...(inherited ?? {}), ...((spec.encoding as Json) ?? {}) };
    for (const l of spec.layer as Json[]) if (isObject(l) && addZoom(l, enc)) return true;
  }
  return false;
}

function filterRows(spec: unknown, hidden: ReadonlyMap<string, ReadonlySet<string>>): void {
  if (Array.isArray(spec)) for (const s of spec) filterRows(s, hidden);
  else if (isObject(spec)) {
    const data = spec.data;
    if (isObject(data) && Array.isArray(data.values))
      data.values = (data.values as Json[]).filter(
        (row) => ![...hidden].some(([f, off]) => row[f] !== undefined && off.has(String(row[f]))),
      );
    for (const [k, v] of Object.entries(spec)) if (k !== 'data') filterRows(v, hidden);
  }
}

/** The report's spec with tooltips, the hidden values filtered out, and zoom where it fits. */
export function interactiveSpec(
  spec: Json,
  hidden: ReadonlyMap<string, ReadonlySet<string>> = new Map(),
  opts: { zoom?: boolean; width?: number } = {},
): Json {
  const out = structuredClone(spec);
  filterRows(out, hidden);
  const config = isObject(out.config) ? out.config : {};
  out.config = {
    ...config,
    mark: { ...(isObject(config.mark) ? config.mark : {}), tooltip: { content: 'data' } },
  };
  if (
    opts.zoom !== false &&
    !('facet' in out) &&
    !('hconcat' in out) &&
    !('vconcat' in out) &&
    !('concat' in out)
  )
    addZoom(out);
  return out;
}

/** Whether interactiveSpec adds zoom to this spec (the page says so next to the figure). */
export function canZoom(spec: Json): boolean {
  if ('facet' in spec || 'hconcat' in spec || 'vconcat' in spec || 'concat' in spec) return false;
  return addZoom(structuredClone(spec));
}

/** The rows a figure draws, flattened for its data table (the same rows, as text). */
export function figureRows(spec: Json): Json[] {
  return dataArrays(spec).flat();
}
