/**
 * A minimal writer for ONNX ModelProto bytes (protobuf wire format), enough to express the small
 * single-purpose graphs the ONNX Runtime backend runs. Field numbers follow onnx.proto3.
 * No protobuf library is used because these graphs need a handful of message types and only varint,
 * fixed32 and length-delimited fields.
 */

type Field = Uint8Array;

function varint(value: number): number[] {
  const bytes: number[] = [];
  if (value < 0) {
    // Negative int64 values are ten-byte two's-complement varints.
    let lo = value >>> 0;
    let hi = Math.floor(value / 2 ** 32) >>> 0;
    for (let i = 0; i < 9; i++) {
      bytes.push((lo & 0x7f) | 0x80);
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi = hi >>> 7;
    }
    bytes.push(1);
    return bytes;
  }
  let v = value;
  while (v > 0x7f) {
    bytes.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  bytes.push(v);
  return bytes;
}

function concat(parts: Field[]): Uint8Array {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint8Array(total);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

function intField(fieldNumber: number, value: number): Field {
  return Uint8Array.from([...varint(fieldNumber << 3), ...varint(value)]);
}

function floatField(fieldNumber: number, value: number): Field {
  const out = new Uint8Array([...varint((fieldNumber << 3) | 5), 0, 0, 0, 0]);
  new DataView(out.buffer).setFloat32(out.length - 4, value, true);
  return out;
}

function bytesField(fieldNumber: number, payload: Uint8Array): Field {
  return concat([Uint8Array.from([...varint((fieldNumber << 3) | 2), ...varint(payload.length)]), payload]);
}

function stringField(fieldNumber: number, value: string): Field {
  return bytesField(fieldNumber, new TextEncoder().encode(value));
}

/** A float attribute (integers and integer lists are plain numbers and arrays). */
export interface FloatAttribute {
  float: number;
}

/** A string attribute (ScatterND's reduction, say). */
export interface StringAttribute {
  string: string;
}

export type AttributeValue = number | number[] | FloatAttribute | StringAttribute;

/** A graph node: `op` (of `domain`, default ONNX) applied to named inputs, producing named outputs. */
export interface OnnxNode {
  op: string;
  /** Unique in its graph; `${op}_${index}` unless given (ORT's profiler reports nodes by name). */
  name?: string;
  inputs: string[];
  outputs: string[];
  domain?: string;
  attributes?: Record<string, AttributeValue>;
}

export type OnnxElementType = 'float32' | 'int32' | 'int64';

/** A graph input or output: a tensor with a shape of fixed sizes (numbers) or symbolic names (strings). */
export interface OnnxValue {
  name: string;
  shape: (number | string)[];
  /** float32 unless given. */
  type?: OnnxElementType;
}

/** A constant tensor stored in the graph. */
export interface OnnxInitializer {
  name: string;
  dims: number[];
  type: OnnxElementType;
  values: ArrayLike<number>;
}

const ATTRIBUTE_FLOAT = 1;
const ATTRIBUTE_INT = 2;
const ATTRIBUTE_STRING = 3;
const ATTRIBUTE_INTS = 7;
const ELEM: Record<OnnxElementType, number> = { float32: 1, int32: 6, int64: 7 };

function encodeAttribute(name: string, value: AttributeValue): Field {
  const parts: Field[] = [stringField(1, name)];
  if (typeof value === 'object' && 'string' in value) {
    parts.push(stringField(4, value.string));
    parts.push(intField(20, ATTRIBUTE_STRING));
  } else if (Array.isArray(value)) {
    for (const v of value) parts.push(intField(8, v));
    parts.push(intField(20, ATTRIBUTE_INTS));
  } else if (typeof value === 'object') {
    parts.push(floatField(2, value.float));
    parts.push(intField(20, ATTRIBUTE_FLOAT));
  } else {
    parts.push(intField(3, value));
    parts.push(intField(20, ATTRIBUTE_INT));
  }
  return concat(parts);
}

function encodeNode(node: OnnxNode, index: number): Field {
  const parts: Field[] = [];
  for (const i of node.inputs) parts.push(stringField(1, i));
  for (const o of node.outputs) parts.push(stringField(2, o));
  parts.push(stringField(3, node.name ?? `${node.op}_${index}`));
  parts.push(stringField(4, node.op));
  for (const [name, value] of Object.entries(node.attributes ?? {})) {
    parts.push(bytesField(5, encodeAttribute(name, value)));
  }
  if (node.domain) parts.push(stringField(7, node.domain));
  return concat(parts);
}

function encodeValueInfo(value: OnnxValue): Field {
  const dims = value.shape.map((d) =>
    bytesField(1, typeof d === 'number' ? intField(1, d) : stringField(2, d)),
  );
  const shape = concat(dims);
  const tensorType = concat([intField(1, ELEM[value.type ?? 'float32']), bytesField(2, shape)]);
  const type = bytesField(1, tensorType);
  return concat([stringField(1, value.name), bytesField(2, type)]);
}

function encodeInitializer(init: OnnxInitializer): Field {
  const parts: Field[] = init.dims.map((d) => intField(1, d));
  parts.push(intField(2, ELEM[init.type]));
  parts.push(stringField(8, init.name));
  let raw: Uint8Array;
  if (init.type === 'float32') {
    raw = new Uint8Array(Float32Array.from(init.values).buffer);
  } else if (init.type === 'int32') {
    raw = new Uint8Array(Int32Array.from(init.values).buffer);
  } else {
    raw = new Uint8Array(BigInt64Array.from(Array.from(init.values, (v) => BigInt(v))).buffer);
  }
  parts.push(bytesField(9, raw));
  return concat(parts);
}

/** Encodes a graph as an ONNX model (IR version 8, default opset 17, plus com.microsoft 1 when used). */
export function encodeOnnxModel(graph: {
  name: string;
  nodes: OnnxNode[];
  inputs: OnnxValue[];
  outputs: OnnxValue[];
  initializers?: OnnxInitializer[];
  opset?: number;
}): Uint8Array {
  const graphParts: Field[] = [];
  graph.nodes.forEach((n, i) => graphParts.push(bytesField(1, encodeNode(n, i))));
  graphParts.push(stringField(2, graph.name));
  for (const init of graph.initializers ?? []) graphParts.push(bytesField(5, encodeInitializer(init)));
  for (const v of graph.inputs) graphParts.push(bytesField(11, encodeValueInfo(v)));
  for (const v of graph.outputs) graphParts.push(bytesField(12, encodeValueInfo(v)));
  const opsets = [bytesField(8, concat([stringField(1, ''), intField(2, graph.opset ?? 17)]))];
  const domains = new Set(graph.nodes.map((n) => n.domain).filter((d): d is string => !!d));
  for (const d of domains) opsets.push(bytesField(8, concat([stringField(1, d), intField(2, 1)])));
  return concat([intField(1, 8), stringField(2, 'psm-lab'), bytesField(7, concat(graphParts)), ...opsets]);
}
