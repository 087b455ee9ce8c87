// XMP sidecars: labels above the threshold become dc:subject keywords (PhotoPrism, digiKam, darktable,
// Lightroom) and lr:hierarchicalSubject entries (one level: what Immich and Lightroom read as tags); the
// probabilities and which keywords are ours go into our own namespace:
//
//   clipdecoder:Keywords  bag of the dc:subject keywords this tool added (so a rerun replaces exactly those)
//   clipdecoder:HierarchicalKeywords  the same for lr:hierarchicalSubject
//   clipdecoder:Scores    bag of {Label, Probability} of those keywords
//   clipdecoder:Model, Head, LabelSet, Threshold   what made them
//
// Originals are never written: only the sidecar. An existing sidecar is merged, not clobbered: exiftool edits
// only the tags above, so other fields and other tools' keywords stay. exiftool (one process, exiftool.ts)
// only ever sees files in a private temporary folder, so that any sidecar name works (its stay-open protocol
// cannot pass a newline) and the sidecar is replaced atomically: copy in, edit, rename back. Tag values go
// through a JSON file (-json=). A sidecar that is not valid XMP is left untouched and named (SIDECAR_INVALID).
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { ClipDecoderError } from '../errors.ts';
import { readRegularFile, writeFileAtomic } from '../util/fs.ts';
import type { ExifToolProcess } from './exiftool.ts';

/** "append": photo.jpg.xmp (darktable, digiKam, PhotoPrism's default); "replace": photo.xmp (Adobe). */
export type SidecarNaming = 'append' | 'replace';
export const SIDECAR_NAMINGS: readonly SidecarNaming[] = ['append', 'replace'];

export const XMP_NAMESPACE_URI = 'https://github.com/clip-decoder/clip-decoder/ns/xmp/1.0/';

// exiftool's user-defined tags for our namespace (https://exiftool.org/config.html).
const EXIFTOOL_CONFIG = `%Image::ExifTool::UserDefined = (
  'Image::ExifTool::XMP::Main' => {
    clipdecoder => { SubDirectory => { TagTable => 'Image::ExifTool::UserDefined::clipdecoder' } },
  },
);
%Image::ExifTool::UserDefined::clipdecoder = (
  GROUPS => { 0 => 'XMP', 1 => 'XMP-clipdecoder', 2 => 'Image' },
  NAMESPACE => { 'clipdecoder' => '${XMP_NAMESPACE_URI}' },
  WRITABLE => 'string',
  Keywords => { List => 'Bag' },
  HierarchicalKeywords => { List => 'Bag' },
  Model => {},
  Head => {},
  LabelSet => {},
  Threshold => { Writable => 'real' },
  Scores => {
    Struct => { STRUCT_NAME => 'ClipDecoderScore', NAMESPACE => 'clipdecoder', Label => {}, Probability => { Writable => 'real' } },
    List => 'Bag',
  },
);
1;
`;

/** Sidecars larger than this are not read (a sidecar is a few KB). */
const MAX_SIDECAR_BYTES = 16 * 1024 * 1024;

export function sidecarPath(image: string, naming: SidecarNaming): string {
  return naming === 'append' ? `${image}.xmp` : `${image.slice(0, image.length - extname(image).length)}.xmp`;
}

export interface SidecarContent {
  /** Labels to write as keywords, most probable first. */
  labels: { label: string; probability: number }[];
  model: string;
  head: string;
  labelSet: string;
  threshold: number;
}

export interface SidecarChange {
  sidecar: string;
  created: boolean;
  /** Keywords this run adds, and our earlier keywords it removes. */
  added: string[];
  removed: string[];
  /** Other tools' (or the user's) keywords, kept. */
  kept: string[];
  /** dc:subject after the change. */
  subject: string[];
  /** lr:hierarchicalSubject after the change. */
  hierarchical: string[];
}

/**
 * The new dc:subject: other keywords kept, our previous ones replaced by `labels`. A label someone else already
 * set is not claimed as ours, so a later run never removes it.
 */
export function mergeKeywords(subject: readonly string[], previousOurs: readonly string[], labels: readonly string[]) {
  const prev = new Set(previousOurs);
  const others = subject.filter((k) => !prev.has(k));
  const otherSet = new Set(others);
  const ours = labels.filter((l) => !otherSet.has(l));
  const before = new Set(subject);
  const now = new Set(labels);
  return {
    subject: [...others, ...ours],
    ours,
    kept: others,
    added: ours.filter((l) => !before.has(l)),
    removed: subject.filter((k) => prev.has(k) && !now.has(k)),
  };
}

const list = (v: unknown): string[] => (v === undefined || v === null ? [] : Array.isArray(v) ? v.map(String) : [String(v)]);

export class XmpSidecars {
  private readonly exiftool: ExifToolProcess;
  private readonly work: string;
  private n = 0;

  private constructor(exiftool: ExifToolProcess, work: string) {
    this.exiftool = exiftool;
    this.work = work;
  }

  /** Starts one exiftool process; call end() (in a finally) to stop it. */
  static async start(): Promise<XmpSidecars> {
    // Loaded here: the command line names this module for its flags, and --help should not pay for a spawner.
    const { ExifToolProcess } = await import('./exiftool.ts');
    const work = mkdtempSync(join(tmpdir(), 'clip-decoder-xmp-'));
    const config = join(work, 'clipdecoder.config');
    try {
      writeFileSync(config, EXIFTOOL_CONFIG);
      const exiftool = ExifToolProcess.start(config);
      await exiftool.run(['-ver']).catch(async (e) => {
        await exiftool.end();
        throw e;
      }); // fails once, here, if Perl or exiftool is missing
      return new XmpSidecars(exiftool, work);
    } catch (e) {
      rmSync(work, { recursive: true, force: true });
      throw e;
    }
  }

  /** exiftool's JSON of a file in the work folder, with its errors and warnings. */
  private async read(tmp: string): Promise<{ tags: Record<string, unknown>; problems: string[] }> {
    const { stdout, stderr } = await this.exiftool.run(['-json', '-api', 'StructFormat=JSONQ', '-struct', '-G1', '-XMP:all', tmp]);
    let tags: Record<string, unknown> = {};
    try {
      tags = (JSON.parse(stdout) as Record<string, unknown>[])[0] ?? {};
    } catch {
      // no JSON: exiftool said why on stderr
    }
    // Errors, and the warnings that say the XMP itself is broken (not minor ones about a tag's value).
    const broken = (w: string) => /format error|not a valid|invalid xmp|no closing tag/i.test(w);
    const problems = [...list(tags['ExifTool:Error']), ...list(tags['ExifTool:Warning']).filter(broken)];
    for (const line of stderr.split('\n')) {
      if (line.startsWith('Error: ') || (line.startsWith('Warning: ') && broken(line)))
        problems.push(line.replace(/^(Error|Warning): /, ''));
    }
    return { tags, problems: problems.map((p) => p.replace(/ - \S*$/, '')) };
  }

  /** Tags of an XMP file (exiftool's -struct -G1 names, e.g. "XMP-dc:Subject"); for tests and tools. */
  async readTags(path: string): Promise<Record<string, unknown>> {
    const tmp = join(this.work, `r${this.n++}.xmp`);
    writeFileSync(tmp, await readRegularFile(path, MAX_SIDECAR_BYTES));
    try {
      return (await this.read(tmp)).tags;
    } finally {
      rmSync(tmp, { force: true });
    }
  }

  /**
   * Writes (or with dryRun only plans) the sidecar's keywords and scores. Throws SIDECAR_INVALID for an
   * existing sidecar that is not XMP (left untouched), OUTPUT_UNWRITABLE when it cannot be replaced.
   */
  async update(sidecar: string, content: SidecarContent, options: { dryRun?: boolean } = {}): Promise<SidecarChange> {
    const tmp = join(this.work, `s${this.n++}.xmp`);
    try {
      let existing: Buffer | undefined;
      try {
        existing = await readRegularFile(sidecar, MAX_SIDECAR_BYTES);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw unwritable(sidecar, e, 'cannot read the existing sidecar');
      }
      let subject: string[] = [];
      let hierarchical: string[] = [];
      let ours: string[] = [];
      let oursLr: string[] = [];
      if (existing) {
        writeFileSync(tmp, existing);
        const { tags, problems } = await this.read(tmp);
        if (problems.length > 0 || !/<x:xmpmeta|<rdf:RDF/.test(existing.toString('utf8'))) {
          const why = problems[0] ?? 'no <x:xmpmeta> or <rdf:RDF> element';
          throw new ClipDecoderError('SIDECAR_INVALID', `${sidecar}: not valid XMP (${why}): left untouched`, sidecar);
        }
        subject = list(tags['XMP-dc:Subject']);
        hierarchical = list(tags['XMP-lr:HierarchicalSubject']);
        ours = list(tags['XMP-clipdecoder:Keywords']);
        oursLr = list(tags['XMP-clipdecoder:HierarchicalKeywords']);
      }
      const labels = content.labels.map((l) => l.label);
      const merged = mergeKeywords(subject, ours, labels);
      // The same keywords in lr:hierarchicalSubject, with ours recorded apart: another tool may have set a
      // keyword in one list and not the other.
      const lr = mergeKeywords(hierarchical, oursLr, labels);
      const change: SidecarChange = {
        sidecar,
        created: !existing,
        added: merged.added,
        removed: merged.removed,
        kept: merged.kept,
        subject: merged.subject,
        hierarchical: lr.subject,
      };
      if (options.dryRun) return change;
      const ourSet = new Set([...merged.ours, ...lr.ours]);
      const tagsFile = join(this.work, `t${this.n++}.json`);
      const tags = {
        SourceFile: '*',
        'XMP-dc:Subject': merged.subject,
        'XMP-lr:HierarchicalSubject': lr.subject,
        'XMP-clipdecoder:Keywords': merged.ours,
        'XMP-clipdecoder:HierarchicalKeywords': lr.ours,
        'XMP-clipdecoder:Scores': content.labels
          .filter((l) => ourSet.has(l.label))
          .map((l) => ({ Label: l.label, Probability: Number(l.probability.toFixed(4)) })),
        'XMP-clipdecoder:Model': content.model,
        'XMP-clipdecoder:Head': content.head,
        'XMP-clipdecoder:LabelSet': content.labelSet,
        'XMP-clipdecoder:Threshold': content.threshold,
      };
      writeFileSync(tagsFile, JSON.stringify([tags]));
      const { stderr } = await this.exiftool.run([`-json=${tagsFile}`, '-overwrite_original', tmp]);
      rmSync(tagsFile, { force: true });
      const error = /^Error: (.*?)(?: - \S*)?$/m.exec(stderr);
      if (error || !existsSync(tmp)) {
        const why = error?.[1] ?? 'it wrote no file';
        if (existing)
          throw new ClipDecoderError('SIDECAR_INVALID', `${sidecar}: exiftool cannot edit it (${why}): left untouched`, sidecar);
        throw new ClipDecoderError('OUTPUT_UNWRITABLE', `${sidecar}: exiftool cannot create it (${why}): skipped`, sidecar);
      }
      try {
        await writeFileAtomic(sidecar, readFileSync(tmp));
      } catch (e) {
        throw unwritable(sidecar, e, 'cannot write the sidecar');
      }
      return change;
    } finally {
      rmSync(tmp, { force: true });
    }
  }

  async end(): Promise<void> {
    try {
      await this.exiftool.end();
    } finally {
      rmSync(this.work, { recursive: true, force: true });
    }
  }
}

function unwritable(sidecar: string, e: unknown, what: string): ClipDecoderError {
  if (e instanceof ClipDecoderError)
    return new ClipDecoderError(
      'OUTPUT_UNWRITABLE',
      `${e.message.replace(/: only regular files are read$/, '')}: no sidecar can be written there: skipped`,
      sidecar,
      {
        cause: e,
      },
    );
  const code = (e as NodeJS.ErrnoException).code;
  const why = code === 'EISDIR' ? 'EISDIR: a folder is in the way' : (code ?? String(e));
  return new ClipDecoderError('OUTPUT_UNWRITABLE', `${sidecar}: ${what} (${why}): skipped`, sidecar, { cause: e });
}
