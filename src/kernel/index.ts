// kernel/: the mechanism the kernel gives, with no snap knowledge. The native
// addon's loader, where cgroup2 is mounted and its files, /proc reads (start
// time, exe, namespaces), signal names, the signal guard every signal goes
// through (pidfds, cgroup membership), freeze/thaw and cgroup.kill.
// May import: util/.
export const LAYER = { name: 'kernel', mayImport: ['util'] } as const;
