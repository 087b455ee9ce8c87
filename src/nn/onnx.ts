// A minimal ONNX ModelProto writer: just enough protobuf to build the one-op graphs the matmul backend runs
// (MatMul, Gemm, FusedMatMul) in memory, and the exported head (src/head/export-onnx.ts: initializers and
// metadata), without a protobuf dependency. Field numbers are those of onnx.proto3.

/** Growable byte buffer with protobuf primitives. */
class PbWriter {
  private buf = new Uint8Array(256);
  private len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.len));
    this.buf = next;
  }

  varint(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    this.reserve(10);
    do {
      let byte = Number(x & 0x7fn);
      x >>= 7n;
      if (x !== 0n) byte |= 0x80;
      this.buf[this.len++] = byte;
    } while (x !== 0n);
  }

  private tag(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }

  int(field: number, v: number): void {
    this.tag(field, 0);
    this.varint(v);
  }

  float(field: number, v: number): void {
    this.tag(field, 5);
    this.reserve(4);
    new DataView(this.buf.buffer).setFloat32(this.len, v, true);
    this.len += 4;
  }

  bytes(field: number, data: Uint8Array): void {
    this.tag(field, 2);
    this.varint(data.length);
    this.reserve(data.length);
    this.buf.set(data, this.len);
    this.len += data.length;
  }

  string(field: number, s: string): void {
    this.bytes(field, new TextEncoder().encode(s));
  }

  message(field: number, build: (w: PbWriter) => void): void {
    const inner = new PbWriter();
    build(inner);
    this.bytes(field, inner.finish());
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }
}

/** A dimension: a fixed size or a symbolic name (dynamic). */
export type Dim = number | string;

export interface ValueInfo {
  name: string;
  /** Element type: 1 = FLOAT (the only one the engine uses). */
  elemType?: number;
  shape: Dim[];
}

export type AttrValue = number | number[] | string | { float: number };

export interface NodeSpec {
  opType: string;
  domain?: string;
  inputs: string[];
  outputs: string[];
  /** Integers become INT attributes, `{float}` FLOAT, arrays INTS, strings STRING. */
  attrs?: Record<string, AttrValue>;
}

/** A constant tensor stored in the graph (weights, shapes). */
export interface TensorSpec {
  name: string;
  dims: number[];
  data: Float32Array | BigInt64Array;
}

export interface GraphSpec {
  name: string;
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  nodes: NodeSpec[];
  initializers?: TensorSpec[];
  /** ModelProto.doc_string. */
  doc?: string;
  /** ModelProto.metadata_props (what onnxruntime's session.metadata.customMetadataMap reads back). */
  metadata?: Record<string, string>;
}

// AttributeProto.AttributeType
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_STRING = 3;
const ATTR_INTS = 7;

function writeValueInfo(w: PbWriter, v: ValueInfo): void {
  w.string(1, v.name); // ValueInfoProto.name
  w.message(2, (tp) => {
    // TypeProto.tensor_type
    tp.message(1, (tt) => {
      tt.int(1, v.elemType ?? 1); // TypeProto.Tensor.elem_type
      tt.message(2, (sh) => {
        // TensorShapeProto.dim
        for (const d of v.shape) {
          sh.message(1, (dim) => {
            if (typeof d === 'number')
              dim.int(1, d); // dim_value
            else dim.string(2, d); // dim_param
          });
        }
      });
    });
  });
}

// TensorProto.DataType
const FLOAT = 1;
const INT64 = 7;

function writeTensor(w: PbWriter, t: TensorSpec): void {
  for (const d of t.dims) w.int(1, d); // dims
  w.int(2, t.data instanceof Float32Array ? FLOAT : INT64); // data_type
  w.string(8, t.name); // name
  // raw_data is little-endian, as typed arrays are on every platform Node and browsers run on
  w.bytes(9, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
}

function writeNode(w: PbWriter, n: NodeSpec, index: number): void {
  for (const i of n.inputs) w.string(1, i);
  for (const o of n.outputs) w.string(2, o);
  w.string(3, `${n.opType}_${index}`);
  w.string(4, n.opType);
  for (const [name, value] of Object.entries(n.attrs ?? {})) {
    w.message(5, (a) => {
      a.string(1, name);
      if (typeof value === 'number') {
        a.int(3, value);
        a.int(20, ATTR_INT);
      } else if (typeof value === 'string') {
        a.string(4, value);
        a.int(20, ATTR_STRING);
      } else if (Array.isArray(value)) {
        for (const x of value) a.int(8, x);
        a.int(20, ATTR_INTS);
      } else {
        a.float(2, value.float);
        a.int(20, ATTR_FLOAT);
      }
    });
  }
  if (n.domain) w.string(7, n.domain);
}

/** Serialises a graph into ONNX ModelProto bytes (IR version 8, opset 17 + com.microsoft 1). */
export function encodeModel(g: GraphSpec): Uint8Array {
  const w = new PbWriter();
  w.int(1, 8); // ir_version
  w.string(2, 'clip-decoder'); // producer_name
  if (g.doc) w.string(6, g.doc); // doc_string
  w.message(7, (gw) => {
    g.nodes.forEach((n, i) => gw.message(1, (nw) => writeNode(nw, n, i)));
    gw.string(2, g.name);
    for (const t of g.initializers ?? []) gw.message(5, (tw) => writeTensor(tw, t));
    for (const v of g.inputs) gw.message(11, (vw) => writeValueInfo(vw, v));
    for (const v of g.outputs) gw.message(12, (vw) => writeValueInfo(vw, v));
  });
  w.message(8, (o) => {
    o.string(1, '');
    o.int(2, 17);
  });
  if (g.nodes.some((n) => n.domain === 'com.microsoft')) {
    w.message(8, (o) => {
      o.string(1, 'com.microsoft');
      o.int(2, 1);
    });
  }
  for (const [key, value] of Object.entries(g.metadata ?? {})) {
    w.message(14, (m) => {
      m.string(1, key);
      m.string(2, value);
    });
  }
  return w.finish();
}
