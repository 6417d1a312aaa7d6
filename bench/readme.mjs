// The README's Performance section quotes the latest full benchmark (bench/results.md): the
// machine line, the command, the table and the memory lines, between two markers.
//
//   node bench/readme.mjs           copy them from bench/results.md into README.md
//   node bench/readme.mjs --check   fail if README.md does not quote bench/results.md exactly
//
// run.sh does the copy after every full run; the test command runs the check, so the README
// can never show figures other than the latest results file.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const README = join(HERE, '..', 'README.md');
const RESULTS = join(HERE, 'results.md');
const BEGIN = '<!-- begin: quoted from bench/results.md by bench/readme.mjs -->';
const END = '<!-- end: quoted from bench/results.md -->';

/** Everything between the title and the notes of a results file. */
export function quotable(results) {
  const lines = results.split('\n');
  const first = lines.findIndex((l, i) => i > 0 && l.trim() !== '');
  const notes = lines.indexOf('Notes:');
  if (!lines[0].startsWith('# ') || first < 0 || notes < first) {
    throw new Error(`${RESULTS}: not a results file (a title, the results, then "Notes:")`);
  }
  return lines.slice(first, notes).join('\n').trim();
}

function split(readme) {
  const b = readme.indexOf(BEGIN);
  const e = readme.indexOf(END);
  if (b < 0 || e < b || readme.indexOf(BEGIN, b + 1) >= 0) {
    throw new Error(`${README}: needs exactly one "${BEGIN}" … "${END}" block`);
  }
  return { before: readme.slice(0, b + BEGIN.length), quoted: readme.slice(b + BEGIN.length, e), after: readme.slice(e) };
}

const readme = readFileSync(README, 'utf8');
const want = `\n${quotable(readFileSync(RESULTS, 'utf8'))}\n`;
const { before, quoted, after } = split(readme);
if (process.argv.includes('--check')) {
  if (quoted !== want) {
    console.error('README.md: the Performance section does not quote bench/results.md; run `node bench/readme.mjs`');
    process.exit(1);
  }
  console.log('README.md quotes bench/results.md');
} else if (quoted !== want) {
  writeFileSync(README, before + want + after);
  console.log('README.md: Performance section updated from bench/results.md');
}
