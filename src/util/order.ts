// order.ts: sorting by code units, as strcmp and systemd's lists do. Names,
// cgroup paths and ISO timestamps sort the same in every locale this way;
// String.prototype.localeCompare sorts through ICU's collation, which ignores
// hyphens at its first level and whose tables (~2 MiB of node's binary) are
// paged in for the first comparison and stay resident in the daemon.

/** -1, 0 or 1 as `a` sorts before, with or after `b` by UTF-16 code units. */
export function compareCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
