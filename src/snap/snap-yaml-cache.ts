// snap-yaml-cache.ts: a refresh reads the same few snap.yaml files many times
// (the source's name, its validation before and after it is copied in, the
// old and new revisions' apps in every step), and validating one costs
// milliseconds. Results are kept by the exact text (and the hook files
// given), so a changed file is always validated again; each caller gets its
// own copy to change as it likes. The name a snap.yaml is reported under is
// not part of the key: a valid one parses to the same result wherever it
// lies (only the message of a failure names it, and failures are not kept),
// so the copy of a source in a new revision's directory costs no second
// validation.
import { parseSnapYaml, type SnapYaml, type SnapYamlOptions } from './snap-yaml';

const MAX = 64;
const cache = new Map<string, SnapYaml>();

/** parseSnapYaml, remembered for identical text: throws as it does (failures are not kept). */
export function parseSnapYamlCached(text: string | Buffer, source?: string, options: SnapYamlOptions = {}): SnapYaml {
  const key = `${(options.hookFiles ?? []).join('/')}\0${typeof text === 'string' ? 'S' + text : 'B' + text.toString('latin1')}`;
  let snap = cache.get(key);
  if (snap) {
    cache.delete(key); // most recently used last
  } else {
    snap = parseSnapYaml(text, source, options);
    if (cache.size >= MAX) cache.delete(cache.keys().next().value!);
  }
  cache.set(key, snap);
  return structuredClone(snap);
}
