/**
 * A minimal writer for ONNX ModelProto bytes (protobuf wire format), enough to express the small
 * single-purpose graphs the ONNX Runtime matmul backend runs. Field numbers follow onnx.proto3.
 * No protobuf library is used because these graphs need five message types and only varint and
 * length-delimited fields.
 */

type Field = Uint8Array;

function varint(value: number): number[] {
  const bytes: number[] = [];
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

function bytesField(fieldNumber: number, payload: Uint8Array): Field {
  return concat([Uint8Array.from([...varint((fieldNumber << 3) | 2), ...varint(payload.length)]), payload]);
}

function stringField(fieldNumber: number, value: string): Field {
  return bytesField(fieldNumber, new TextEncoder().encode(value));
}

/** A graph node: `op` applied to named inputs, producing named outputs, with integer or int-list attributes. */
export interface OnnxNode {
  op: string;
  inputs: string[];
  outputs: string[];
  attributes?: Record<string, number | number[]>;
}

/** A graph input or output: float32 with a shape of fixed sizes (numbers) or symbolic names (strings). */
export interface OnnxValue {
  name: string;
  shape: (number | string)[];
}

const ATTRIBUTE_INT = 2;
const ATTRIBUTE_INTS = 7;
const ELEM_FLOAT = 1;

function encodeAttribute(name: string, value: number | number[]): Field {
  const parts: Field[] = [stringField(1, name)];
  if (Array.isArray(value)) {
    for (const v of value) parts.push(intField(8, v));
    parts.push(intField(20, ATTRIBUTE_INTS));
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
  parts.push(stringField(3, `${node.op}_${index}`));
  parts.push(stringField(4, node.op));
  for (const [name, value] of Object.entries(node.attributes ?? {})) {
    parts.push(bytesField(5, encodeAttribute(name, value)));
  }
  return concat(parts);
}

function encodeValueInfo(value: OnnxValue): Field {
  const dims = value.shape.map((d) =>
    bytesField(1, typeof d === 'number' ? intField(1, d) : stringField(2, d)),
  );
  const shape = concat(dims);
  const tensorType = concat([intField(1, ELEM_FLOAT), bytesField(2, shape)]);
  const type = bytesField(1, tensorType);
  return concat([stringField(1, value.name), bytesField(2, type)]);
}

/** Encodes a float32 graph as an ONNX model (IR version 8, default opset 17). */
export function encodeOnnxModel(graph: {
  name: string;
  nodes: OnnxNode[];
  inputs: OnnxValue[];
  outputs: OnnxValue[];
  opset?: number;
}): Uint8Array {
  const graphParts: Field[] = [];
  graph.nodes.forEach((n, i) => graphParts.push(bytesField(1, encodeNode(n, i))));
  graphParts.push(stringField(2, graph.name));
  for (const v of graph.inputs) graphParts.push(bytesField(11, encodeValueInfo(v)));
  for (const v of graph.outputs) graphParts.push(bytesField(12, encodeValueInfo(v)));
  const opset = concat([stringField(1, ''), intField(2, graph.opset ?? 17)]);
  return concat([
    intField(1, 8),
    stringField(2, 'psm-lab'),
    bytesField(7, concat(graphParts)),
    bytesField(8, opset),
  ]);
}
