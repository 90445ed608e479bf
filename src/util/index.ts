// util/: the bottom layer. What every other layer uses and that knows nothing
// of cgroups, snaps or supervision: the one error class (Node-shaped `code`,
// `errno`, `syscall`), Go-style durations, atomic file and symlink
// replacement. Imports nothing of snapproc.
export const LAYER = { name: 'util', mayImport: [] } as const;
