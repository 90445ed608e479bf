// process/: a snap's processes (SPEC 3 and 4). snapd's cgroup names, finding a
// snap's cgroups anywhere in the tree, who is main / group / other and which
// revision each runs, the process table `ps` shows, stop-modes and signalling
// an app. Knows the cgroup names of snaps, not what is installed.
// May import: kernel/, util/.
export const LAYER = { name: 'process', mayImport: ['kernel', 'util'] } as const;
