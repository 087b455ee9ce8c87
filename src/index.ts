// The public library API of clip-decoder. See README.md for a runnable example.

// Tagging: a CLIP model + a CLIP-Decoder head → an independent probability per label per image.
export { Tagger, DEFAULT_MODEL, DEFAULT_HEAD, NO_HEAD } from './tagger/tagger.ts';
export type { TaggerOptions, TagOptions, TagResult, LabelProbability, LabelSet, Scoring, ScoringMode } from './tagger/tagger.ts';
// CLIP-Decoder+ scoring: CLIP's score fused with the head's, and the calibration file that holds the weights.
export {
  CALIBRATION_FILE,
  CALIBRATION_FORMAT,
  CALIBRATION_VERSION,
  checkCalibration,
  clipFingerprint,
  headDigest,
  readCalibration,
  residualWeights,
  validateCalibration,
  writeCalibration,
} from './head/calibration.ts';
export type { Calibration, CalibrationExpectation } from './head/calibration.ts';
export { bestThreshold, fitStreams, fuseLogits, globalScores, trainedMask } from './head/fusion.ts';
export type { Fusion, StreamWeights } from './head/fusion.ts';
export { attentionOverlayPng } from './tagger/overlay.ts';

// Parsing what people type: label lists and numbers, with errors that name the label or flag.
export { checkLabels, parseLabelList, parseLabelLines, readLabelFile, DEFAULT_MAX_LABELS, DEFAULT_MAX_LABEL_LENGTH } from './labels.ts';
export type { LabelLimits, LabelListOptions } from './labels.ts';
export { parseDecimal } from './numbers.ts';
export type { NumberKind } from './numbers.ts';

// CLIP encoders over ONNX (any Hugging Face / transformers.js CLIP folder).
export { ClipModel } from './clip/model.ts';
export type { ClipModelOptions, ImageResult, ImageEncoding } from './clip/model.ts';
export { SUPPORTED_MODEL_TYPES } from './clip/family.ts';
export type { ModelDtype, ModelFamily } from './clip/family.ts';
export type { LogitParams } from './clip/logits.ts';
export { embedLabels, DEFAULT_TEMPLATES } from './clip/prompts.ts';
export { preprocessImage, parsePreprocessConfig } from './clip/preprocess.ts';

// Datasets, features, training and evaluation.
export { loadDataset } from './data/load.ts';
export { trainingSet, evaluationSet } from './data/types.ts';
export type { Dataset, DatasetItem, DatasetSplit } from './data/types.ts';
export { buildEmojiTags, planEmojiTags } from './data/emoji/build.ts';
export type { EmojiTagsOptions, EmojiTagsPlan, EmojiTagsResult, EmojiTagsStats } from './data/emoji/build.ts';
export { buildEmojiScenes } from './data/emoji/scenes.ts';
export type { EmojiScenesOptions, EmojiScenesResult, EmojiScenesStats, UnseenStats } from './data/emoji/scenes.ts';
export { SCENES_DEFAULTS } from './data/emoji/scene-defaults.ts';
export { extractFeatures } from './features/extract.ts';
export type { ExtractItem, ExtractOptions, ExtractSummary } from './features/extract.ts';
export { FeatureCache } from './features/cache.ts';
export { trainOnDataset, evaluateClipZeroShot } from './train/pipeline.ts';
export type { QuerySource, TrainRunOptions, TrainRunResult } from './train/pipeline.ts';
export type { EpochLog, FitResult, TrainProgress } from './train/fit.ts';
export { FIT_DEFAULTS, autoEmaDecay, defaultTrainerOptions } from './train/defaults.ts';
export type { TrainerOptions } from './train/trainer.ts';
export { defaultHeadConfig } from './head/config.ts';
export type { HeadConfig, HeadMode } from './head/config.ts';
export type { CheckpointMeta } from './train/checkpoint.ts';
export type { PreparedLabels } from './head/head.ts';
export { evaluateScores, evaluateAndWriteReport, metricsTable } from './eval/report.ts';
export type { EvalOptions, EvalReport, ReportMetrics, WrittenReport } from './eval/report.ts';
export { readScoresFile, writeScoresFile } from './eval/scores.ts';
export { headToOnnx, exportHeadOnnx, HEAD_ONNX, HEAD_ONNX_OPSET } from './head/export-onnx.ts';
export type { HeadOnnxOptions, ExportHeadOptions } from './head/export-onnx.ts';
export { exportWeb, taggerWebScoring, uncalibratedScoring, webBundle, writeWebBundle } from './web/bundle.ts';
export type { ExportWebOptions, WebBundleInput, WebFile, WebScoring } from './web/bundle.ts';
export { buildServer } from './serve/server.ts';
export type { ServerOptions } from './serve/server.ts';
export { DEFAULT_LIMITS, type ServeLimits } from './serve/limits.ts';

// Photo libraries: incremental tagging into a results file, XMP sidecars, .npy embedding shards.
export { tagLibrary } from './library/tag-library.ts';
export type { TagLibraryOptions, XmpOptions } from './library/tag-library.ts';
export { embedLibrary } from './library/embed-library.ts';
export type { EmbedLibraryOptions } from './library/embed-library.ts';
export type { LibrarySummary } from './library/plan.ts';
export { ResultsFile } from './library/results.ts';
export type { ResultRecord, ResultIdentity } from './library/results.ts';
export { XmpSidecars, sidecarPath, mergeKeywords } from './library/xmp.ts';
export type { SidecarNaming, SidecarChange } from './library/xmp.ts';

export { ClipDecoderError, isClipDecoderError, HTTP_STATUS } from './errors.ts';
export type { ErrorCode } from './errors.ts';
