// The fast matmul path: one tiny ONNX graph per "shape class" (op, ranks, transposes, alpha, bias), built in
// memory by onnx.ts with symbolic dims, so a handful of cached sessions serve every size. Inputs and the
// pre-allocated output are passed as views of our own buffers: ONNX Runtime reads and writes them in place.
//
// We call the synchronous native binding that onnxruntime-node's own InferenceSession wraps in a
// setImmediate + Promise: the engine's layers are synchronous functions, and the per-call overhead is ~6 µs.
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { ClipDecoderError } from '../errors.ts';
import { encodeModel, type NodeSpec } from './onnx.ts';
import { TsMatmul, checkOut, planMatmul, type MatmulBackend, type MatmulOptions } from './matmul.ts';
import type { Buf } from './tensor.ts';

interface NativeTensor {
  type: 'float32';
  dims: number[];
  data: Float32Array;
  location: 'cpu';
}
interface NativeSession {
  loadModel(buffer: ArrayBuffer, byteOffset: number, byteLength: number, options: object): void;
  run(feeds: Record<string, NativeTensor>, fetches: Record<string, NativeTensor | null>, options: object): unknown;
  dispose(): void;
}
interface NativeBinding {
  binding: { InferenceSession: new () => NativeSession };
  initOrt(): void;
}

let native: NativeBinding | undefined;
function loadBinding(): NativeBinding {
  if (!native) {
    const require = createRequire(import.meta.url);
    try {
      native = require('onnxruntime-node/dist/binding.js') as NativeBinding;
      native.initOrt();
    } catch (e) {
      throw new ClipDecoderError(
        'MODEL_INVALID',
        `cannot load the onnxruntime-node native binding (${(e as Error).message}); reinstall onnxruntime-node 1.30 or use the 'ts' matmul backend`,
        'onnxruntime-node',
        { cause: e },
      );
    }
  }
  return native;
}

export interface OrtMatmulOptions {
  /** Intra-op threads of every session (default: the machine's cores). */
  threads?: number;
  /** Products below this many FLOPs go to the TS kernel (the ORT call costs ~6 µs). */
  minFlops?: number;
}

const sym = (p: string, r: number): string[] => Array.from({ length: r }, (_, i) => `${p}${i}`);

export class OrtMatmul implements MatmulBackend {
  readonly name = 'ort';
  private readonly sessions = new Map<string, NativeSession>();
  private readonly fallback = new TsMatmul();
  private readonly threads: number;
  private readonly minFlops: number;
  private readonly noRunOptions = {};

  constructor(opts: OrtMatmulOptions = {}) {
    this.threads = opts.threads ?? availableParallelism();
    this.minFlops = opts.minFlops ?? 65536;
    loadBinding();
  }

  /** Number of distinct sessions built so far (one per shape class). */
  get sessionCount(): number {
    return this.sessions.size;
  }

  private session(ra: number, rb: number, transA: boolean, transB: boolean, alpha: number, bias: boolean, relu: boolean): NativeSession {
    const key = `${ra}:${rb}:${+transA}:${+transB}:${alpha}:${+bias}:${+relu}`;
    let s = this.sessions.get(key);
    if (s) return s;
    const rank2 = ra === 2 && rb === 2;
    const gemmAttrs = { transA: +transA, transB: +transB, alpha: { float: alpha } };
    const node: NodeSpec = !rank2
      ? { opType: 'FusedMatMul', domain: 'com.microsoft', inputs: ['A', 'B'], outputs: ['Y'], attrs: gemmAttrs }
      : relu // com.microsoft FusedGemm applies the activation in MLAS's output stage: no extra pass
        ? {
            opType: 'FusedGemm',
            domain: 'com.microsoft',
            inputs: bias ? ['A', 'B', 'C'] : ['A', 'B'],
            outputs: ['Y'],
            attrs: { ...gemmAttrs, activation: 'Relu' },
          }
        : { opType: 'Gemm', inputs: bias ? ['A', 'B', 'C'] : ['A', 'B'], outputs: ['Y'], attrs: gemmAttrs };
    const inputs = [
      { name: 'A', shape: sym('a', ra) },
      { name: 'B', shape: sym('b', rb) },
    ];
    if (bias) inputs.push({ name: 'C', shape: ['n'] });
    const model = encodeModel({ name: 'matmul', inputs, outputs: [{ name: 'Y', shape: sym('y', Math.max(ra, rb)) }], nodes: [node] });
    s = new (loadBinding().binding.InferenceSession)();
    s.loadModel(model.buffer as ArrayBuffer, model.byteOffset, model.byteLength, {
      intraOpNumThreads: this.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      // Every session owns a thread pool; spinning pools starve each other (measured: 2-4x slower).
      extra: { session: { intra_op: { allow_spinning: '0' } } },
    });
    this.sessions.set(key, s);
    return s;
  }

  matmul(out: Buf, a: Buf, aDims: readonly number[], b: Buf, bDims: readonly number[], opts: MatmulOptions = {}): void {
    const transA = !!opts.transA,
      transB = !!opts.transB,
      alpha = opts.alpha ?? 1;
    const p = planMatmul(aDims, bDims, transA, transB);
    const flops = 2 * p.batchCount * p.m * p.n * p.k;
    if (
      !(out instanceof Float32Array) ||
      !(a instanceof Float32Array) ||
      !(b instanceof Float32Array) ||
      flops < this.minFlops ||
      p.k === 0
    ) {
      this.fallback.matmul(out, a, aDims, b, bDims, opts);
      return;
    }
    checkOut(out, p);
    const bias = opts.bias;
    const badBias = bias !== undefined && !(bias instanceof Float32Array);
    if (badBias || ((bias || opts.relu) && p.outDims.length !== 2)) {
      this.fallback.matmul(out, a, aDims, b, bDims, opts); // TsMatmul validates and reports these cases
      return;
    }
    const sess = this.session(aDims.length, bDims.length, transA, transB, alpha, !!bias, !!opts.relu);
    const feeds: Record<string, NativeTensor> = {
      A: { type: 'float32', dims: [...aDims], data: view(a, aDims), location: 'cpu' },
      B: { type: 'float32', dims: [...bDims], data: view(b, bDims), location: 'cpu' },
    };
    if (bias) feeds.C = { type: 'float32', dims: [p.n], data: bias.length === p.n ? bias : bias.subarray(0, p.n), location: 'cpu' };
    const outN = p.batchCount * p.m * p.n;
    const y: NativeTensor = { type: 'float32', dims: p.outDims, data: out.length === outN ? out : out.subarray(0, outN), location: 'cpu' };
    sess.run(feeds, { Y: y }, this.noRunOptions);
  }

  dispose(): void {
    for (const s of this.sessions.values()) s.dispose();
    this.sessions.clear();
  }
}

function view(a: Float32Array, dims: readonly number[]): Float32Array {
  let n = 1;
  for (const d of dims) n *= d;
  if (a.length < n) throw new ClipDecoderError('INPUT_INVALID', `matmul input holds ${a.length} values, dims [${dims}] need ${n}`);
  return a.length === n ? a : a.subarray(0, n);
}
