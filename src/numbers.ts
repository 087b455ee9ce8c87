// The one parser for numbers typed by people (CLI flags, query parameters, form fields). JavaScript's Number()
// reads '' as 0, '0x1' as 1 and '0b1' as 1; a flag accepts only a decimal number ("12", "-0.5", ".25", and for
// non-integer kinds an exponent, "1e-4", as learning rates are written), and says which flag and what it wanted
// when it gets anything else.
import { ClipDecoderError } from './errors.ts';

export type NumberKind =
  | 'number' // any finite decimal
  | 'positive' // > 0
  | 'non-negative' // ≥ 0
  | 'probability' // in [0, 1]
  | 'fraction' // in [0, 1): a decay, a dropout rate
  | 'integer' // a whole number
  | 'positive-integer' // 1, 2, 3, …
  | 'non-negative-integer'; // 0, 1, 2, …

const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;
const INTEGER = /^[+-]?\d+$/;

const WANT: Record<NumberKind, string> = {
  number: 'a decimal number',
  positive: 'a positive decimal number',
  'non-negative': 'a decimal number ≥ 0',
  probability: 'a probability in [0, 1]',
  fraction: 'a decimal number in [0, 1)',
  integer: 'an integer',
  'positive-integer': 'a positive integer',
  'non-negative-integer': 'an integer ≥ 0',
};

function inRange(n: number, kind: NumberKind): boolean {
  switch (kind) {
    case 'number':
    case 'integer':
      return true;
    case 'positive':
    case 'positive-integer':
      return n > 0;
    case 'non-negative':
    case 'non-negative-integer':
      return n >= 0;
    case 'probability':
      return n >= 0 && n <= 1;
    case 'fraction':
      return n >= 0 && n < 1;
  }
}

/**
 * Parses `raw` as a plain decimal number of the given kind; throws BAD_PARAMETER naming `name` (a flag such as
 * "--threshold", or a parameter name) otherwise.
 */
export function parseDecimal(raw: string, name: string, kind: NumberKind = 'number'): number {
  const integer = kind.endsWith('integer');
  const text = raw.trim();
  const n = Number(text);
  const ok = (integer ? INTEGER : DECIMAL).test(text) && (integer ? Number.isSafeInteger(n) : Number.isFinite(n)) && inRange(n, kind);
  if (!ok) throw new ClipDecoderError('BAD_PARAMETER', `${name} must be ${WANT[kind]}, got "${raw}"`, name);
  return n;
}
