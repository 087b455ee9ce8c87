// The image input limit, in a module of its own so the server's limits (and --help) need not load sharp.

/** Default pixel limit: refuses decompression bombs while admitting any real photo (~100 MP). */
export const DEFAULT_PIXEL_LIMIT = 100_000_000;
