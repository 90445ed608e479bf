// supervisor/: `snapproc daemon` and what it owns (SPEC 5, 6, 8). Supervised
// services and their records, restart policy, refresh / revert / remove as
// journalled changes (change-runner.ts runs them; changes.ts holds the steps
// and reaches the supervisor only through change-host.ts), the control API
// on the unix socket and its client.
// May import: snap/, process/, kernel/, util/.
export const LAYER = { name: 'supervisor', mayImport: ['snap', 'process', 'kernel', 'util'] } as const;
