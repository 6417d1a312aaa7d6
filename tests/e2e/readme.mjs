// The README's code snippets, so that tests run exactly what users copy.
//
// A section is everything from a `## ` heading to the next one (its `### ` subsections
// included). A fenced block directly preceded by `<!-- snippet: path -->` must be that file,
// byte for byte; the file is what a test runs.

import { readFileSync } from 'node:fs';
import { join } from 'node:path';

import { ROOT } from './harness.mjs';

/** The fenced code blocks of the README section whose heading starts with `heading`. */
export function readmeSnippets(heading) {
  const text = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`## ${heading}`));
  if (start < 0) throw new Error(`README.md has no section "## ${heading}"`);
  let end = lines.findIndex((l, i) => i > start && l.startsWith('## '));
  if (end < 0) end = lines.length;

  const blocks = [];
  let open = null;
  let pendingFile = null;
  for (let i = start + 1; i < end; i++) {
    const line = lines[i];
    if (open) {
      if (line === '```') {
        blocks.push({ ...open, code: open.lines.join('\n') + '\n' });
        open = null;
      } else {
        open.lines.push(line);
      }
      continue;
    }
    const marker = line.match(/^<!-- snippet: (\S+) -->$/);
    if (marker) {
      pendingFile = marker[1];
      continue;
    }
    const fence = line.match(/^```(\w*)$/);
    if (fence) {
      open = { lang: fence[1], line: i + 1, file: pendingFile, lines: [] };
      pendingFile = null;
      continue;
    }
    if (line.trim() !== '') pendingFile = null;
  }
  if (open) throw new Error(`README.md:${open.line}: unclosed code block`);
  return blocks;
}

/** Asserts that a `<!-- snippet: path -->` block is that file, byte for byte. */
export function assertSnippetIsFile(block) {
  const file = readFileSync(join(ROOT, block.file), 'utf8');
  if (file !== block.code) {
    throw new Error(
      `README.md:${block.line}: the snippet differs from ${block.file}; paste the file again`,
    );
  }
}
