// The bundled model and head, used when no other is named. A module of its own so that the command line can
// name them without loading ONNX Runtime. `models/` sits two levels above both src/tagger/ (run from source with
// tsx) and dist/tagger/ (the compiled package), so one relative URL serves both.
import { fileURLToPath } from 'node:url';

const MODELS_DIR = fileURLToPath(new URL('../../models/', import.meta.url));
/** The bundled CLIP model (pico-CLIP). */
export const DEFAULT_MODEL = `${MODELS_DIR}pico-clip`;
/** The bundled CLIP-Decoder head for it. */
export const DEFAULT_HEAD = `${MODELS_DIR}pico-clip-decoder`;
