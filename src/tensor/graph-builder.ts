/**
 * Builds one ONNX graph out of the kernels' own graphs (kernel-graphs.ts): each inlined graph keeps its nodes
 * and attributes exactly, with its inputs bound to values of the larger graph and every other name made unique.
 * A computation that ran as many one-kernel sessions then runs as one session: one native call, no copies of
 * intermediate results into JS memory, and intermediate buffers that ORT's arena reuses.
 */
import type { OnnxInitializer, OnnxNode, OnnxValue } from './onnx-graph.ts';
import type { GraphSpec } from './ort-session.ts';

export class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxInitializer[] = [];
  private readonly inputs: OnnxValue[] = [];
  private readonly outputs: OnnxValue[] = [];
  private opset = 17;
  private count = 0;

  /** Declares a graph input and returns its name. */
  input(name: string, shape: (number | string)[], type: OnnxValue['type'] = 'float32'): string {
    this.inputs.push({ name, shape, type });
    return name;
  }

  /** Declares `value` a graph output named `name`. */
  output(name: string, value: string, shape: (number | string)[]): void {
    this.nodes.push({ op: 'Identity', inputs: [value], outputs: [name] });
    this.outputs.push({ name, shape });
  }

  /** A constant int64 vector (shapes, axes). */
  int64(values: number[]): string {
    const name = `const_${this.count++}`;
    this.initializers.push({ name, dims: [values.length], type: 'int64', values });
    return name;
  }

  /** One node with fresh output names. */
  node(
    op: string,
    inputs: string[],
    attributes?: OnnxNode['attributes'],
    outputCount = 1,
    domain?: string,
  ): string[] {
    const id = this.count++;
    const outputs = Array.from({ length: outputCount }, (_, i) => `${op}_${id}_${i}`);
    this.nodes.push({ op, name: `${op}_${id}`, inputs, outputs, attributes, domain });
    return outputs;
  }

  /**
   * Reshape of `value` to `shape`: constant entries as ONNX Reshape reads them (-1 infers one, 0 copies the input's
   * dimension), or the name of an int64 shape value computed in the graph.
   */
  reshape(value: string, shape: number[] | string): string {
    return this.node('Reshape', [value, typeof shape === 'string' ? shape : this.int64(shape)])[0];
  }

  /**
   * Inlines `spec` with each of its inputs bound to a value of this graph; returns its outputs' names here.
   * Throws if an input is left unbound.
   */
  inline(spec: GraphSpec, bind: Record<string, string>): Record<string, string> {
    const prefix = `${spec.name}_${this.count++}/`;
    for (const i of spec.inputs)
      if (!(i.name in bind)) throw new Error(`graph builder: input ${i.name} of ${spec.name} is not bound`);
    const rename = (name: string): string => (name === '' ? '' : (bind[name] ?? prefix + name));
    spec.nodes.forEach((n, i) =>
      this.nodes.push({
        ...n,
        // Named after the kernel graph it came from, so a profile can add its nodes' times up by kernel.
        name: `${prefix}${n.op}_${i}`,
        inputs: n.inputs.map(rename),
        outputs: n.outputs.map(rename),
      }),
    );
    for (const init of spec.initializers ?? []) this.initializers.push({ ...init, name: prefix + init.name });
    this.opset = Math.max(this.opset, spec.opset ?? 17);
    return Object.fromEntries(spec.outputs.map((o) => [o.name, prefix + o.name]));
  }

  /** The whole graph, ready for an OrtGraph. */
  build(name: string, optimization: GraphSpec['optimization']): GraphSpec {
    return {
      name,
      nodes: this.nodes,
      inputs: this.inputs,
      outputs: this.outputs,
      initializers: this.initializers,
      opset: this.opset,
      optimization,
    };
  }
}
