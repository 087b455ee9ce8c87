// A named parameter: PyTorch-layout data, its gradient (null for fixed buffers such as the closed-set
// queries), and whether weight decay applies (the official recipe decays tensors of rank ≥ 2 only).

export interface Param {
  readonly name: string;
  readonly shape: readonly number[];
  readonly data: Float32Array;
  /** null: a fixed buffer, saved and loaded but never trained. */
  readonly grad: Float32Array | null;
  readonly decay: boolean;
}

export function makeParam(name: string, shape: readonly number[], trainable = true): Param {
  let n = 1;
  for (const d of shape) n *= d;
  return { name, shape: [...shape], data: new Float32Array(n), grad: trainable ? new Float32Array(n) : null, decay: shape.length >= 2 };
}

/** An ordered set of parameters, addressed by name. */
export class ParamSet {
  readonly list: Param[] = [];
  private readonly byName = new Map<string, Param>();

  add(p: Param): Param {
    if (this.byName.has(p.name)) throw new Error(`duplicate parameter ${p.name}`);
    this.list.push(p);
    this.byName.set(p.name, p);
    return p;
  }

  get(name: string): Param {
    const p = this.byName.get(name);
    if (!p) throw new Error(`no parameter ${name}`);
    return p;
  }

  has(name: string): boolean {
    return this.byName.has(name);
  }

  get trainable(): Param[] {
    return this.list.filter((p) => p.grad !== null);
  }

  zeroGrad(): void {
    for (const p of this.list) p.grad?.fill(0);
  }

  /** Number of values in trainable parameters. */
  get count(): number {
    return this.trainable.reduce((s, p) => s + p.data.length, 0);
  }
}
