// yaml-limits.ts: what snap.yaml must be before it is read at all, since a
// snap is hostile input. snapd (go-yaml) refuses bytes that are not UTF-8 and
// control characters such as NUL; deep nesting must give one clear error, not
// a stack overflow in the parser or in the validator; aliases that expand
// exponentially ("billion laughs") must be bounded before anything walks
// them. The checks are linear in the size of the input and never recurse.
import { isAlias, isMap, isPair, isScalar, isSeq, Lexer } from 'yaml';
import type { Document, Node } from 'yaml';

/** More than any real snap.yaml nests (apps.A.sockets.S.listen-stream is 5). */
export const MAX_YAML_DEPTH = 64;
/** Nodes the document may expand to through its aliases. */
export const MAX_YAML_EXPANDED_NODES = 100_000;
/** Bytes of a snap.yaml (snapd's own snaps have a few KiB). */
export const MAX_SNAP_YAML_BYTES = 1 << 20;

export interface TextProblem {
  message: string;
  /** Byte offset (before decoding) or character offset (after) of the problem. */
  offset?: number;
}

/**
 * Decodes snap.yaml bytes: valid UTF-8 only (a BOM is allowed and dropped).
 * Returns the text, or the problem with the byte offset of the first bad sequence.
 */
export function decodeSnapYaml(bytes: Uint8Array): { text: string } | { problem: TextProblem } {
  if (bytes.length > MAX_SNAP_YAML_BYTES) return { problem: { message: `snap.yaml is larger than ${MAX_SNAP_YAML_BYTES} bytes (${bytes.length})` } };
  try {
    return { text: new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(bytes) };
  } catch {
    return { problem: { message: `snap.yaml is not valid UTF-8 (invalid byte sequence at byte ${firstInvalidUtf8(bytes)})`, offset: firstInvalidUtf8(bytes) } };
  }
}

/** Offset of the first byte that does not start a well-formed UTF-8 sequence. */
function firstInvalidUtf8(b: Uint8Array): number {
  let i = 0;
  while (i < b.length) {
    const c = b[i];
    let n = 0;
    let min = 0;
    if (c < 0x80) { i++; continue; }
    else if (c >= 0xc2 && c <= 0xdf) { n = 1; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { n = 2; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { n = 3; min = 0x10000; }
    else return i;
    let cp = c & (0x3f >> n);
    for (let k = 1; k <= n; k++) {
      const cc = b[i + k];
      if (cc === undefined || (cc & 0xc0) !== 0x80) return i;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += n + 1;
  }
  return b.length;
}

/**
 * Control characters go-yaml refuses ("control characters are not allowed"):
 * C0 other than tab, LF and CR, DEL, C1 other than NEL, and U+FFFE/U+FFFF.
 * Returns the first one's offset in the text and a message, or null.
 */
export function controlCharacter(text: string): TextProblem | null {
  const m = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u0080-\u0084\u0086-\u009f\ufffe\uffff]/.exec(text);
  if (!m) return null;
  const code = m[0].charCodeAt(0);
  const name = code === 0 ? 'a NUL byte' : `the control character U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  return { message: `snap.yaml contains ${name}; control characters are not allowed`, offset: m.index };
}

/**
 * True when flow collections (`[`, `{`) nest deeper than MAX_YAML_DEPTH: found
 * with the YAML lexer alone (iterative, linear, and it knows quoted scalars),
 * because the parser itself recurses and takes seconds to overflow on a
 * megabyte of `[`.
 */
export function flowTooDeep(text: string): boolean {
  let depth = 0;
  for (const token of new Lexer().lex(text)) {
    if (token === '[' || token === '{') {
      if (++depth > MAX_YAML_DEPTH) return true;
    } else if (token === ']' || token === '}') {
      depth = Math.max(0, depth - 1);
    }
  }
  return false;
}

/** True for the parser's own stack overflow, which it reports as a document error. */
export function isStackOverflow(message: string): boolean {
  return /Maximum call stack size exceeded/i.test(message);
}

export const TOO_DEEP = `snap.yaml is nested too deeply (more than ${MAX_YAML_DEPTH} levels)`;

/**
 * Walks the document once (iteratively, each node once, aliases by their
 * target) and returns a problem when it nests deeper than MAX_YAML_DEPTH or
 * expands through aliases to more than MAX_YAML_EXPANDED_NODES nodes, or an
 * alias refers to its own ancestor; null otherwise. The node at fault is
 * returned for its position.
 */
export function documentBounds(doc: Document): { message: string; node?: Node } | null {
  const root = doc.contents as Node | null;
  if (root === null || root === undefined) return null;
  // Post-order with memo: size (expanded node count) and depth of every node.
  const memo = new Map<unknown, { size: number; depth: number }>();
  const onPath = new Set<unknown>();
  const children = (n: unknown): unknown[] => {
    if (isAlias(n)) {
      const t = n.resolve(doc);
      return t === undefined ? [] : [t];
    }
    if (isMap(n)) {
      const out: unknown[] = [];
      for (const p of n.items) {
        if (isPair(p)) {
          if (p.key !== null && p.key !== undefined && typeof p.key === 'object') out.push(p.key);
          if (p.value !== null && p.value !== undefined && typeof p.value === 'object') out.push(p.value);
        }
      }
      return out;
    }
    if (isSeq(n)) return n.items.filter((x) => x !== null && typeof x === 'object');
    return [];
  };
  const stack: Array<{ node: unknown; kids: unknown[] | null; depthOnPath: number }> = [{ node: root, kids: null, depthOnPath: 1 }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    if (top.kids === null) {
      if (memo.has(top.node)) {
        stack.pop();
        continue;
      }
      if (!isScalar(top.node) && top.depthOnPath > MAX_YAML_DEPTH) return { message: TOO_DEEP, node: top.node as Node };
      onPath.add(top.node);
      top.kids = children(top.node);
      for (const k of top.kids) {
        if (onPath.has(k)) return { message: 'snap.yaml has an alias that refers to its own anchor (a recursive alias)', node: top.node as Node };
        if (!memo.has(k)) stack.push({ node: k, kids: null, depthOnPath: top.depthOnPath + (isAlias(top.node) ? 0 : 1) });
      }
      continue;
    }
    stack.pop();
    onPath.delete(top.node);
    let size = isAlias(top.node) ? 0 : 1;
    let depth = 0;
    for (const k of top.kids) {
      const m = memo.get(k)!;
      size += m.size;
      depth = Math.max(depth, m.depth);
    }
    depth += isAlias(top.node) || isScalar(top.node) ? 0 : 1;
    if (depth > MAX_YAML_DEPTH) return { message: TOO_DEEP, node: top.node as Node };
    if (size > MAX_YAML_EXPANDED_NODES) {
      return { message: `snap.yaml expands through its aliases to more than ${MAX_YAML_EXPANDED_NODES} nodes (an alias bomb)`, node: top.node as Node };
    }
    memo.set(top.node, { size, depth });
  }
  return null;
}
