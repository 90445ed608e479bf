// sys.h: the plain Linux core of snapproc's addon. Knows nothing of N-API.
// Every function returns 0 (or a non-negative value) on success and -errno on
// failure; `syscall_out`, where present, names the call that failed so the
// JavaScript side can build a Node-shaped error.
#pragma once
#include <stdint.h>
#include <sys/types.h>
#include <vector>
#include <string>

namespace snapproc {

int sys_kill(int pid, int sig, const char** syscall_out);
int sys_killpg(int pgid, int sig, const char** syscall_out);
int sys_pidfd_open(int pid, const char** syscall_out);
int sys_pidfd_send_signal(int pidfd, int sig, const char** syscall_out);
// Waits until the process behind `pidfd` exits, `timeout_ms` passes (-1: no
// limit) or `cancel_fd` becomes readable. 1 = exited, 0 = timed out,
// 2 = cancelled, -errno on failure.
int sys_pidfd_wait(int pidfd, int timeout_ms, int cancel_fd, const char** syscall_out);
// Exit status of a process that has exited, read through its pidfd
// (PIDFD_GET_INFO with PIDFD_INFO_EXIT, Linux 6.15+): the raw wait status.
int sys_pidfd_exit_status(int pidfd, int* status, const char** syscall_out);

int sys_set_child_subreaper(int on, const char** syscall_out);
int sys_get_child_subreaper(const char** syscall_out);
int sys_set_pdeathsig(int sig, const char** syscall_out);
int sys_get_pdeathsig(const char** syscall_out);
int sys_set_name(const char* name, const char** syscall_out);
int sys_get_name(std::string* name, const char** syscall_out);

// One process's identity as the kernel reports it.
struct proc_ids {
  int32_t pid;
  int32_t ppid;
  int32_t pgid;
};
// Reads `dir`/cgroup.procs (the cgroup's own members, not its children).
int cg_read_procs(const char* dir, std::vector<int32_t>* out, const char** syscall_out);
// ppid and pgid of each pid; processes that are gone are left out.
void proc_ids_of(const std::vector<int32_t>& pids, std::vector<proc_ids>* out);
// Waits until `key` in `dir`/cgroup.events has value `want` (e.g. "populated"
// 0, "frozen" 1): 1 = reached, 0 = timed out, 2 = cancelled, -errno.
int cg_wait_event(const char* dir, const char* key, int want, int timeout_ms, int cancel_fd,
                  const char** syscall_out);
// Writes cgroup.freeze and waits for `frozen` to follow (1 = done, 0 = timed out).
int cg_set_frozen(const char* dir, int frozen, int timeout_ms, const char** syscall_out);

struct fanout_result {
  int32_t signalled;  // processes the signal was delivered to
  int32_t gone;       // listed members that had exited before they could be signalled
  int32_t cgroups;    // cgroups in the subtree that were walked
  int32_t frozen;     // 1 if the subtree reached `frozen 1` before signalling
};
// The stop hot path in one call: freeze `dir` (subtree), read every member of
// the subtree, open a pidfd for each, read the members again and signal only
// those present both times (so a PID that was reused in between is never hit),
// then thaw. With `also_cont`, SIGCONT follows `sig` so that stopped members
// act on it. Refuses (-EDEADLK) if the calling process is a member.
int cg_signal_all(const char* dir, int sig, int also_cont, int freeze_timeout_ms,
                  fanout_result* result, const char** syscall_out);

}  // namespace snapproc
