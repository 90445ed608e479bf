// snap/: the snap package and what is installed under the state root R
// (SPEC 1, 2, 5's data rules). snap.yaml read and validated as snapd does,
// reading a snap given by path, the revision store and `current` links, the
// $SNAP_DATA copy and read-only mounts, the snap environment, launch files
// for the launcher, hooks, per-app log files.
// May import: process/, kernel/, util/.
export const LAYER = { name: 'snap', mayImport: ['process', 'kernel', 'util'] } as const;
