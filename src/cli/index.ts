// cli/: the `snapproc` command line (SPEC 9), a thin layer over the library.
// program.ts defines the commands and loads each command's module only when
// it runs; cgroup-commands.ts acts on cgroups directly (no supervisor),
// snap-commands.ts on installed snaps through the supervisor.
// May import: every layer below (supervisor/, snap/, process/, kernel/, util/).
export const LAYER = { name: 'cli', mayImport: ['supervisor', 'snap', 'process', 'kernel', 'util'] } as const;
