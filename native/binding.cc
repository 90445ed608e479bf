// binding.cc: the N-API glue. Converts values and nothing else: each function
// calls one plain function of sys.cc or supervise.cc and, on failure, throws an Error that
// carries `errno` (negative) and `syscall`; src/kernel/native.ts turns that into a
// Node-shaped SnapprocError. Blocking waits run on a thread of their own and
// settle a promise through a thread-safe function (libuv's pool stays free).
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <napi.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "sys.h"

using namespace snapproc;

namespace {

Napi::Value ThrowErrno(Napi::Env env, int neg_errno, const char* syscall) {
  Napi::Error err = Napi::Error::New(env, std::string(syscall ? syscall : "unknown") + " failed");
  err.Set("errno", Napi::Number::New(env, neg_errno));
  err.Set("syscall", Napi::String::New(env, syscall ? syscall : "unknown"));
  err.ThrowAsJavaScriptException();
  return env.Undefined();
}

bool ArgInt(const Napi::CallbackInfo& info, size_t i, int* out) {
  if (info.Length() <= i || !info[i].IsNumber()) {
    Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a number")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::Number>().Int32Value();
  return true;
}

bool ArgString(const Napi::CallbackInfo& info, size_t i, std::string* out) {
  if (info.Length() <= i || !info[i].IsString()) {
    Napi::TypeError::New(info.Env(), "argument " + std::to_string(i) + " must be a string")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = info[i].As<Napi::String>().Utf8Value();
  return true;
}

// ---- waits off the main thread -------------------------------------------

// One pending wait: the blocking call's result travels back to the main thread
// and settles the promise there. `cancel_fd` (an eventfd) lets JavaScript end
// the wait early; it is closed on the main thread once the promise settles.
struct Wait {
  Napi::Promise::Deferred deferred;
  int cancel_fd;
  int rc = 0;
  const char* syscall = nullptr;
  explicit Wait(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)), cancel_fd(-1) {}
};

void SettleWait(Napi::Env env, Napi::Function, std::nullptr_t*, Wait* wait) {
  if (env != nullptr) {
    if (wait->rc < 0) {
      Napi::Error err = Napi::Error::New(env, std::string(wait->syscall ? wait->syscall : "wait") + " failed");
      err.Set("errno", Napi::Number::New(env, wait->rc));
      err.Set("syscall", Napi::String::New(env, wait->syscall ? wait->syscall : "wait"));
      wait->deferred.Reject(err.Value());
    } else {
      // 1 reached, 0 timed out, 2 cancelled
      static const char* names[] = {"timeout", "done", "cancelled"};
      wait->deferred.Resolve(Napi::String::New(env, names[wait->rc]));
    }
  }
  if (wait->cancel_fd >= 0) close(wait->cancel_fd);
  delete wait;
}

using WaitTsfn = Napi::TypedThreadSafeFunction<std::nullptr_t, Wait, SettleWait>;

// The nice value of the calling thread, for a thread it starts. Linux keeps
// nice per thread, and the supervisor's main thread resets its children to
// nice 0 (SCHED_RESET_ON_FORK), new threads included: its waiting threads
// would time a stop at nice 0 while a fork storm keeps the CPUs busy.
int CallerNice() {
  errno = 0;
  int nice = getpriority(PRIO_PROCESS, 0);
  return errno != 0 ? 0 : nice;
}

// In a thread just started: takes `nice` (where allowed; else it stays at 0).
void TakeNice(int nice) {
  if (nice != 0) setpriority(PRIO_PROCESS, 0, nice);
}

// Starts `work` on its own thread; returns [promise, cancelFd].
template <typename Work>
Napi::Value StartWait(Napi::Env env, const char* name, Work work) {
  Wait* wait = new Wait(env);
  wait->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wait->cancel_fd < 0) {
    int e = errno;
    delete wait;
    return ThrowErrno(env, -e, "eventfd");
  }
  WaitTsfn tsfn = WaitTsfn::New(env, name, 0, 1);
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, wait->deferred.Promise());
  pair.Set(1u, Napi::Number::New(env, wait->cancel_fd));
  int nice = CallerNice();
  std::thread([tsfn, wait, work, nice]() mutable {
    TakeNice(nice);
    wait->rc = work(wait->cancel_fd, &wait->syscall);
    tsfn.BlockingCall(wait);
    tsfn.Release();
  }).detach();
  return pair;
}

// ---- processes --------------------------------------------------------------

Napi::Value Kill(const Napi::CallbackInfo& info) {
  int pid, sig;
  if (!ArgInt(info, 0, &pid) || !ArgInt(info, 1, &sig)) return info.Env().Undefined();
  const char* sc = nullptr;
  int rc = sys_kill(pid, sig, &sc);
  return rc < 0 ? ThrowErrno(info.Env(), rc, sc) : info.Env().Undefined();
}

Napi::Value Killpg(const Napi::CallbackInfo& info) {
  int pgid, sig;
  if (!ArgInt(info, 0, &pgid) || !ArgInt(info, 1, &sig)) return info.Env().Undefined();
  const char* sc = nullptr;
  int rc = sys_killpg(pgid, sig, &sc);
  return rc < 0 ? ThrowErrno(info.Env(), rc, sc) : info.Env().Undefined();
}

Napi::Value PidfdOpen(const Napi::CallbackInfo& info) {
  int pid;
  if (!ArgInt(info, 0, &pid)) return info.Env().Undefined();
  const char* sc = nullptr;
  int rc = sys_pidfd_open(pid, &sc);
  return rc < 0 ? ThrowErrno(info.Env(), rc, sc) : Napi::Number::New(info.Env(), rc);
}

Napi::Value PidfdGetfd(const Napi::CallbackInfo& info) {
  int pidfd, target;
  if (!ArgInt(info, 0, &pidfd) || !ArgInt(info, 1, &target)) return info.Env().Undefined();
  const char* sc = nullptr;
  int rc = sys_pidfd_getfd(pidfd, target, &sc);
  return rc < 0 ? ThrowErrno(info.Env(), rc, sc) : Napi::Number::New(info.Env(), rc);
}

Napi::Value PidfdSendSignal(const Napi::CallbackInfo& info) {
  int fd, sig;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &sig)) return info.Env().Undefined();
  const char* sc = nullptr;
  int rc = sys_pidfd_send_signal(fd, sig, &sc);
  return rc < 0 ? ThrowErrno(info.Env(), rc, sc) : info.Env().Undefined();
}

Napi::Value PidfdExitStatus(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgInt(info, 0, &fd)) return info.Env().Undefined();
  const char* sc = nullptr;
  int status = 0;
  int rc = sys_pidfd_exit_status(fd, &status, &sc);
  return rc < 0 ? ThrowErrno(info.Env(), rc, sc) : Napi::Number::New(info.Env(), status);
}

// Resolves 'done' once the file system holding the path is flushed.
Napi::Value Syncfs(const Napi::CallbackInfo& info) {
  std::string path;
  if (!ArgString(info, 0, &path)) return info.Env().Undefined();
  return StartWait(info.Env(), "snapproc.syncfs", [path](int, const char** sc) { return sys_syncfs(path.c_str(), sc); });
}

Napi::Value BindReadonly(const Napi::CallbackInfo& info) {
  std::string path;
  if (!ArgString(info, 0, &path)) return info.Env().Undefined();
  const char* sc = nullptr;
  int rc = sys_bind_readonly(path.c_str(), &sc);
  return rc < 0 ? ThrowErrno(info.Env(), rc, sc) : info.Env().Undefined();
}

Napi::Value CancelWait(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgInt(info, 0, &fd)) return info.Env().Undefined();
  uint64_t one = 1;
  if (write(fd, &one, sizeof one) < 0) return ThrowErrno(info.Env(), -errno, "write");
  return info.Env().Undefined();
}

// ---- prctl ------------------------------------------------------------------

Napi::Value SetChildSubreaper(const Napi::CallbackInfo& info) {
  const char* sc = nullptr;
  int rc = sys_set_child_subreaper(info.Length() > 0 && info[0].ToBoolean(), &sc);
  return rc < 0 ? ThrowErrno(info.Env(), rc, sc) : info.Env().Undefined();
}

Napi::Value GetChildSubreaper(const Napi::CallbackInfo& info) {
  const char* sc = nullptr;
  int rc = sys_get_child_subreaper(&sc);
  return rc < 0 ? ThrowErrno(info.Env(), rc, sc) : Napi::Boolean::New(info.Env(), rc == 1);
}

Napi::Value SetPdeathsig(const Napi::CallbackInfo& info) {
  int sig;
  if (!ArgInt(info, 0, &sig)) return info.Env().Undefined();
  const char* sc = nullptr;
  int rc = sys_set_pdeathsig(sig, &sc);
  return rc < 0 ? ThrowErrno(info.Env(), rc, sc) : info.Env().Undefined();
}

Napi::Value GetPdeathsig(const Napi::CallbackInfo& info) {
  const char* sc = nullptr;
  int rc = sys_get_pdeathsig(&sc);
  return rc < 0 ? ThrowErrno(info.Env(), rc, sc) : Napi::Number::New(info.Env(), rc);
}

Napi::Value SetName(const Napi::CallbackInfo& info) {
  std::string name;
  if (!ArgString(info, 0, &name)) return info.Env().Undefined();
  const char* sc = nullptr;
  int rc = sys_set_name(name.c_str(), &sc);
  return rc < 0 ? ThrowErrno(info.Env(), rc, sc) : info.Env().Undefined();
}

Napi::Value GetName(const Napi::CallbackInfo& info) {
  const char* sc = nullptr;
  std::string name;
  int rc = sys_get_name(&name, &sc);
  return rc < 0 ? ThrowErrno(info.Env(), rc, sc) : Napi::String::New(info.Env(), name);
}

// sched_setscheduler(SCHED_OTHER | SCHED_RESET_ON_FORK) of the calling
// thread: processes it creates start at nice 0 when it runs at a negative
// nice (the supervisor raises its own priority, never its services').
Napi::Value ResetNiceOnFork(const Napi::CallbackInfo& info) {
  struct sched_param param = {};
  param.sched_priority = 0;
  if (sched_setscheduler(0, SCHED_OTHER | SCHED_RESET_ON_FORK, &param) < 0) return ThrowErrno(info.Env(), -errno, "sched_setscheduler");
  return info.Env().Undefined();
}

// malloc_trim(3): hands the free memory of every malloc arena back to the
// kernel. A supervisor that just started or stopped 1000 services keeps
// megabytes of freed allocations resident otherwise; Node has no call for it.
Napi::Value MallocTrim(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), malloc_trim(0) == 1);
}

// execve(2): Node 20 has no process.execve. The daemon uses it to restart
// itself once with V8 flags of its own, keeping its PID (it may be PID 1).
Napi::Value Execve(const Napi::CallbackInfo& info) {
  std::string file;
  if (!ArgString(info, 0, &file)) return info.Env().Undefined();
  if (!info[1].IsArray() || !info[2].IsArray()) {
    Napi::TypeError::New(info.Env(), "execve(file, argv[], env[])").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  auto strings = [](Napi::Array a) {
    std::vector<std::string> v;
    for (uint32_t i = 0; i < a.Length(); i++) v.push_back(a.Get(i).ToString().Utf8Value());
    return v;
  };
  std::vector<std::string> argv = strings(info[1].As<Napi::Array>()), env = strings(info[2].As<Napi::Array>());
  std::vector<char*> av, ev;
  for (auto& x : argv) av.push_back(const_cast<char*>(x.c_str()));
  for (auto& x : env) ev.push_back(const_cast<char*>(x.c_str()));
  av.push_back(nullptr);
  ev.push_back(nullptr);
  // Node marks stdin, stdout and stderr close-on-exec at start-up: unmarked
  // here, or the new image would start with them closed (and write nowhere).
  for (int fd = 0; fd <= 2; fd++) {
    int flags = fcntl(fd, F_GETFD);
    if (flags >= 0 && (flags & FD_CLOEXEC)) fcntl(fd, F_SETFD, flags & ~FD_CLOEXEC);
  }
  execve(file.c_str(), av.data(), ev.data());
  return ThrowErrno(info.Env(), -errno, "execve");
}

// ---- cgroups ----------------------------------------------------------------

Napi::Value ToInt32Array(Napi::Env env, const int32_t* data, size_t n) {
  Napi::Int32Array arr = Napi::Int32Array::New(env, n);
  if (n) memcpy(arr.Data(), data, n * sizeof(int32_t));
  return arr;
}

Napi::Value ReadProcs(const Napi::CallbackInfo& info) {
  std::string dir;
  if (!ArgString(info, 0, &dir)) return info.Env().Undefined();
  std::vector<int32_t> pids;
  const char* sc = nullptr;
  int rc = cg_read_procs(dir.c_str(), &pids, &sc);
  if (rc < 0) return ThrowErrno(info.Env(), rc, sc);
  return ToInt32Array(info.Env(), pids.data(), pids.size());
}

// [pid, ppid, pgid] triples for each live pid of the given Int32Array.
Napi::Value ProcIds(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsTypedArray()) {
    Napi::TypeError::New(info.Env(), "argument 0 must be an Int32Array").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Napi::Int32Array in = info[0].As<Napi::Int32Array>();
  std::vector<int32_t> pids(in.Data(), in.Data() + in.ElementLength());
  std::vector<proc_ids> ids;
  proc_ids_of(pids, &ids);
  return ToInt32Array(info.Env(), reinterpret_cast<const int32_t*>(ids.data()), ids.size() * 3);
}

// What signalAll and signalFrozen did, as JavaScript sees it (NativeFanout).
Napi::Object FanoutObject(Napi::Env env, const fanout_result& res) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("signalled", res.signalled);
  out.Set("gone", res.gone);
  out.Set("cgroups", res.cgroups);
  out.Set("frozen", Napi::Boolean::New(env, res.frozen == 1));
  out.Set("empty", Napi::Boolean::New(env, res.empty == 1));
  out.Set("wasFrozen", Napi::Boolean::New(env, res.was_frozen == 1));
  return out;
}

// Synchronous: the whole freeze-signal-thaw runs in one call, no JS in between.
Napi::Value SignalAll(const Napi::CallbackInfo& info) {
  std::string dir;
  int sig, timeout;
  if (!ArgString(info, 0, &dir) || !ArgInt(info, 1, &sig) || !ArgInt(info, 2, &timeout))
    return info.Env().Undefined();
  bool also_cont = info.Length() > 3 && info[3].ToBoolean();
  bool only_if_frozen = info.Length() > 4 && info[4].ToBoolean();
  bool refuse_frozen = info.Length() > 5 && info[5].ToBoolean();
  fanout_result res;
  const char* sc = nullptr;
  int rc = cg_signal_all(dir.c_str(), sig, also_cont ? 1 : 0, timeout, only_if_frozen ? 1 : 0, refuse_frozen ? 1 : 0, &res, &sc);
  if (rc < 0) return ThrowErrno(info.Env(), rc, sc);
  return FanoutObject(info.Env(), res);
}

// Signals one snapshot of a cgroup the caller froze (and saw `frozen 1` of); leaves it frozen.
Napi::Value SignalFrozen(const Napi::CallbackInfo& info) {
  std::string dir;
  int sig;
  if (!ArgString(info, 0, &dir) || !ArgInt(info, 1, &sig)) return info.Env().Undefined();
  bool also_cont = info.Length() > 2 && info[2].ToBoolean();
  fanout_result res;
  const char* sc = nullptr;
  int rc = cg_signal_frozen(dir.c_str(), sig, also_cont ? 1 : 0, &res, &sc);
  if (rc < 0) return ThrowErrno(info.Env(), rc, sc);
  return FanoutObject(info.Env(), res);
}

// cgroup.freeze written ("1" or "0"), not waited for: one open, write, close (Node's writeFileSync also truncates and allocates).
Napi::Value WriteFreeze(const Napi::CallbackInfo& info) {
  std::string dir;
  if (!ArgString(info, 0, &dir)) return info.Env().Undefined();
  bool frozen = info.Length() > 1 && info[1].ToBoolean();
  const char* sc = nullptr;
  int rc = cg_write_freeze(dir.c_str(), frozen ? 1 : 0, &sc);
  if (rc < 0) return ThrowErrno(info.Env(), rc, sc);
  return info.Env().Undefined();
}

// ---- supervision ------------------------------------------------------------

Napi::Value LockFile(const Napi::CallbackInfo& info) {
  std::string path;
  if (!ArgString(info, 0, &path)) return info.Env().Undefined();
  const char* sc = nullptr;
  int rc = sup_lock_file(path.c_str(), &sc);
  return rc < 0 ? ThrowErrno(info.Env(), rc, sc) : Napi::Number::New(info.Env(), rc);
}

Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgInt(info, 0, &fd)) return info.Env().Undefined();
  peer_cred cred;
  const char* sc = nullptr;
  int rc = sup_peer_cred(fd, &cred, &sc);
  if (rc < 0) return ThrowErrno(info.Env(), rc, sc);
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("pid", cred.pid);
  out.Set("uid", cred.uid);
  out.Set("gid", cred.gid);
  return out;
}

Napi::Value ListenUnix(const Napi::CallbackInfo& info) {
  std::string path;
  int mode, backlog;
  if (!ArgString(info, 0, &path) || !ArgInt(info, 1, &mode) || !ArgInt(info, 2, &backlog))
    return info.Env().Undefined();
  const char* sc = nullptr;
  int rc = sup_listen_unix(path.c_str(), mode, backlog, &sc);
  return rc < 0 ? ThrowErrno(info.Env(), rc, sc) : Napi::Number::New(info.Env(), rc);
}

Napi::Value ConnectUnix(const Napi::CallbackInfo& info) {
  std::string path;
  if (!ArgString(info, 0, &path)) return info.Env().Undefined();
  const char* sc = nullptr;
  int rc = sup_connect_unix(path.c_str(), &sc);
  return rc < 0 ? ThrowErrno(info.Env(), rc, sc) : Napi::Number::New(info.Env(), rc);
}

Napi::Value ListenTcp(const Napi::CallbackInfo& info) {
  std::string host;
  int port, backlog;
  if (!ArgString(info, 0, &host) || !ArgInt(info, 1, &port) || !ArgInt(info, 2, &backlog))
    return info.Env().Undefined();
  const char* sc = nullptr;
  int rc = sup_listen_tcp(host.c_str(), port, backlog, &sc);
  return rc < 0 ? ThrowErrno(info.Env(), rc, sc) : Napi::Number::New(info.Env(), rc);
}

Napi::Value SocketName(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgInt(info, 0, &fd)) return info.Env().Undefined();
  sock_name name;
  const char* sc = nullptr;
  int rc = sup_sock_name(fd, &name, &sc);
  if (rc < 0) return ThrowErrno(info.Env(), rc, sc);
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("family", name.family);
  out.Set("address", name.address);
  out.Set("port", name.port);
  return out;
}

// One notify socket: a thread blocks in sup_notify_recv and hands each
// message to the main thread. The thread-safe function is ref'd, so an open
// notify socket keeps the event loop alive; notifyClose releases it.
struct Notifier;
struct NotifyMsg {
  notify_msg msg;
  int err = 0;  // -errno: the receiving thread stopped on this error
  const char* syscall = nullptr;
};
void DeliverNotify(Napi::Env env, Napi::Function cb, Notifier* n, NotifyMsg* m);
using NotifyTsfn = Napi::TypedThreadSafeFunction<Notifier, NotifyMsg, DeliverNotify>;

struct Notifier {
  int id = 0;
  int fd = -1;
  int cancel_fd = -1;
  bool closed = false;  // main thread only: drop messages still queued after notifyClose
  std::thread thread;
  NotifyTsfn tsfn;
};

std::mutex g_notifiers_mu;  // worker threads may each load the addon
std::map<int, Notifier*> g_notifiers;
int g_next_notifier = 1;

void DeliverNotify(Napi::Env env, Napi::Function cb, Notifier* n, NotifyMsg* m) {
  // env is null while the function is torn down: then n may be gone already.
  if (env != nullptr && !n->closed) {
    if (m->err < 0) {
      cb.Call({Napi::Number::New(env, 0), Napi::Number::New(env, -1), Napi::String::New(env, ""),
               Napi::Number::New(env, m->err), Napi::String::New(env, m->syscall ? m->syscall : "recvmsg")});
    } else {
      Napi::Array fds = Napi::Array::New(env, m->msg.fds.size());
      for (size_t i = 0; i < m->msg.fds.size(); i++) fds.Set(i, Napi::Number::New(env, m->msg.fds[i]));
      m->msg.fds.clear();  // JavaScript owns them now (and closes what it does not keep)
      cb.Call({Napi::Number::New(env, m->msg.pid), Napi::Number::New(env, m->msg.uid),
               Napi::String::New(env, m->msg.text), env.Undefined(), env.Undefined(), fds});
    }
  }
  for (int fd : m->msg.fds) close(fd);
  delete m;
}

// Stops the receiving thread of `n` and waits for it (it never blocks on the
// main thread: the queue is unbounded).
void StopNotifier(Notifier* n) {
  if (!n->thread.joinable()) return;
  uint64_t one = 1;
  while (write(n->cancel_fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
  n->thread.join();
}

Napi::Value NotifyListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  if (!ArgString(info, 0, &path)) return env.Undefined();
  if (info.Length() < 2 || !info[1].IsFunction()) {
    Napi::TypeError::New(env, "argument 1 must be a function").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  const char* sc = nullptr;
  int fd = sup_notify_open(path.c_str(), &sc);
  if (fd < 0) return ThrowErrno(env, fd, sc);
  int cancel = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (cancel < 0) {
    int e = errno;
    close(fd);
    return ThrowErrno(env, -e, "eventfd");
  }
  Notifier* n = new Notifier();
  n->fd = fd;
  n->cancel_fd = cancel;
  {
    std::lock_guard<std::mutex> lock(g_notifiers_mu);
    n->id = g_next_notifier++;
    g_notifiers[n->id] = n;
  }
  n->tsfn = NotifyTsfn::New(env, info[1].As<Napi::Function>(), "snapproc.notify", 0, 1, n,
                            [](Napi::Env, void*, Notifier* n) {
                              // Runs once the thread has released the function: after
                              // notifyClose, when the thread stopped on an error, or
                              // when the environment goes away with the socket open.
                              StopNotifier(n);
                              {
                                std::lock_guard<std::mutex> lock(g_notifiers_mu);
                                g_notifiers.erase(n->id);
                              }
                              if (n->fd >= 0) close(n->fd);
                              close(n->cancel_fd);
                              delete n;
                            });
  int nice = CallerNice();
  n->thread = std::thread([n, nice]() {
    TakeNice(nice);
    NotifyTsfn tsfn = n->tsfn;
    for (;;) {
      NotifyMsg* m = new NotifyMsg();
      int rc = sup_notify_recv(n->fd, n->cancel_fd, &m->msg, &m->syscall);
      if (rc == 1) {
        if (tsfn.BlockingCall(m) != napi_ok) {
          for (int fd : m->msg.fds) close(fd);
          delete m;
          break;  // the environment is closing
        }
        continue;
      }
      if (rc < 0) {
        m->err = rc;
        if (tsfn.BlockingCall(m) != napi_ok) delete m;
      } else {
        delete m;  // cancelled
      }
      break;
    }
    tsfn.Release();
  });
  return Napi::Number::New(env, n->id);
}

Napi::Value NotifyClose(const Napi::CallbackInfo& info) {
  int id;
  if (!ArgInt(info, 0, &id)) return info.Env().Undefined();
  Notifier* n = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_notifiers_mu);
    auto it = g_notifiers.find(id);
    if (it != g_notifiers.end()) {
      n = it->second;
      g_notifiers.erase(it);
    }
  }
  // Unknown or already closed: closing twice is harmless.
  if (n == nullptr) return Napi::Boolean::New(info.Env(), false);
  n->closed = true;
  StopNotifier(n);
  // The socket closes now; the eventfd and `n` go with the function's finalizer.
  close(n->fd);
  n->fd = -1;
  return Napi::Boolean::New(info.Env(), true);
}

Napi::Value ReapChildren(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    Napi::TypeError::New(env, "argument 0 must be an Int32Array").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Int32Array in = info[0].As<Napi::Int32Array>();
  std::vector<int32_t> exclude(in.Data(), in.Data() + in.ElementLength());
  std::vector<reaped> out;
  const char* sc = nullptr;
  int rc = sup_reap_children(exclude, &out, &sc);
  if (rc < 0) return ThrowErrno(env, rc, sc);
  Napi::Array arr = Napi::Array::New(env, out.size());
  for (size_t i = 0; i < out.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("pid", out[i].pid);
    o.Set("status", out[i].status);
    arr.Set((uint32_t)i, o);
  }
  return arr;
}

// spawnInCgroup(file, argv[], env[], cgroupFd, fds[], setsid) -> { pid, pidfd }
Napi::Value SpawnInCgroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string file;
  int cgroup_fd;
  if (!ArgString(info, 0, &file) || info.Length() < 5 || !info[1].IsArray() || !info[2].IsArray() || !ArgInt(info, 3, &cgroup_fd) || !info[4].IsArray()) {
    Napi::TypeError::New(env, "spawnInCgroup(file, argv[], env[], cgroupFd, fds[], setsid)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // Everything the child needs is built here, in the parent: the child may not allocate.
  auto strings = [](Napi::Array a) {
    std::vector<std::string> out;
    for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).ToString().Utf8Value());
    return out;
  };
  std::vector<std::string> argv_s = strings(info[1].As<Napi::Array>());
  std::vector<std::string> env_s = strings(info[2].As<Napi::Array>());
  std::vector<char*> argv_p, env_p;
  for (auto& s : argv_s) argv_p.push_back(const_cast<char*>(s.c_str()));
  argv_p.push_back(nullptr);
  for (auto& s : env_s) env_p.push_back(const_cast<char*>(s.c_str()));
  env_p.push_back(nullptr);
  Napi::Array fds_a = info[4].As<Napi::Array>();
  std::vector<int> fds;
  for (uint32_t i = 0; i < fds_a.Length(); i++) fds.push_back(fds_a.Get(i).As<Napi::Number>().Int32Value());
  bool setsid_too = info.Length() > 5 && info[5].ToBoolean();
  int pidfd = -1;
  const char* sc = nullptr;
  int pid = spawn_in_cgroup(file.c_str(), argv_p.data(), env_p.data(), cgroup_fd, fds.data(), (int)fds.size(), setsid_too ? 1 : 0, &pidfd, &sc);
  if (pid < 0) return ThrowErrno(env, pid, sc);
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", pid);
  out.Set("pidfd", pidfd);
  return out;
}

// ---- many waits on one thread ------------------------------------------------

// One watch_set per environment (the main thread and each worker thread that
// loads the addon), with one thread waiting on it and a thread-safe function
// that hands the ready watches to JavaScript in batches. The function is
// ref'd only while watches are open: a supervisor with services stays
// alive, a program whose waits ended may exit.
struct Watcher;
struct WatchBatch {
  std::vector<std::pair<uint32_t, int>> ready;
};
void DeliverWatch(Napi::Env env, Napi::Function cb, Watcher* w, WatchBatch* b);
using WatchTsfn = Napi::TypedThreadSafeFunction<Watcher, WatchBatch, DeliverWatch>;

struct Watcher {
  watch_set set;
  std::thread thread;
  WatchTsfn tsfn;
  size_t open = 0;  // main thread only
  bool refd = false;
  bool closed = false;
};

std::mutex g_watchers_mu;
std::map<napi_env, Watcher*> g_watchers;

Watcher* WatcherOf(napi_env env) {
  std::lock_guard<std::mutex> lock(g_watchers_mu);
  auto it = g_watchers.find(env);
  return it == g_watchers.end() ? nullptr : it->second;
}

void DeliverWatch(Napi::Env env, Napi::Function cb, Watcher* w, WatchBatch* b) {
  if (env != nullptr && !w->closed) {
    Napi::Int32Array arr = Napi::Int32Array::New(env, b->ready.size() * 2);
    for (size_t i = 0; i < b->ready.size(); i++) {
      arr[i * 2] = (int32_t)b->ready[i].first;
      arr[i * 2 + 1] = b->ready[i].second;
    }
    cb.Call({arr});
  }
  delete b;
}

void WatchRef(Napi::Env env, Watcher* w) {
  bool want = w->open > 0;
  if (want == w->refd) return;
  if (want) w->tsfn.Ref(env);
  else w->tsfn.Unref(env);
  w->refd = want;
}

// The environment's teardown: ends the watcher's thread (its function's finalizer then joins it).
void WatcherTeardown(void* arg) {
  Watcher* w = static_cast<Watcher*>(arg);
  w->closed = true;
  w->set.stop();
}

// watchInit(cb): cb(Int32Array [token, rc, ...]) for watches whose condition holds (rc 1) or failed (-errno).
Napi::Value WatchInit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) {
    Napi::TypeError::New(env, "argument 0 must be a function").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  if (WatcherOf(env) != nullptr) return env.Undefined();
  Watcher* w = new Watcher();
  const char* sc = nullptr;
  int rc = w->set.open(&sc);
  if (rc < 0) {
    delete w;
    return ThrowErrno(env, rc, sc);
  }
  napi_env key = env;
  w->tsfn = WatchTsfn::New(env, info[0].As<Napi::Function>(), "snapproc.watch", 0, 1, w, [key](Napi::Env fenv, void*, Watcher* w) {
    // After the thread released the function: the environment is going away
    // (the teardown hook ran), or the thread ended on an error: then the hook
    // must go with `w`, or the teardown would write to freed memory.
    if (!w->closed) napi_remove_env_cleanup_hook(fenv, WatcherTeardown, w);
    w->set.stop();
    if (w->thread.joinable()) w->thread.join();
    {
      std::lock_guard<std::mutex> lock(g_watchers_mu);
      g_watchers.erase(key);
    }
    delete w;
  });
  w->tsfn.Unref(env);
  {
    std::lock_guard<std::mutex> lock(g_watchers_mu);
    g_watchers[key] = w;
  }
  int nice = CallerNice();
  w->thread = std::thread([w, nice]() {
    TakeNice(nice);
    WatchTsfn tsfn = w->tsfn;
    for (;;) {
      WatchBatch* b = new WatchBatch();
      const char* sc = nullptr;
      int rc = w->set.wait(&b->ready, &sc);
      if (rc != 1) {
        delete b;
        break;  // stopped, or failed (the open watches were told in the batch before)
      }
      if (tsfn.BlockingCall(b) != napi_ok) {
        delete b;
        break;
      }
    }
    tsfn.Release();
  });
  napi_add_env_cleanup_hook(env, WatcherTeardown, w);
  return env.Undefined();
}

// watchPidfd(pidfd) -> token
Napi::Value WatchPidfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgInt(info, 0, &fd)) return env.Undefined();
  Watcher* w = WatcherOf(env);
  if (!w) return ThrowErrno(env, -EINVAL, "watchInit");
  uint32_t token = 0;
  const char* sc = nullptr;
  int rc = w->set.add_pidfd(fd, &token, &sc);
  if (rc < 0) return ThrowErrno(env, rc, sc);
  w->open++;
  WatchRef(env, w);
  return Napi::Number::New(env, token);
}

// watchEvent(dir, key, want[, killAfterMs]) -> token, or 0 when the key has
// that value already; with killAfterMs the watching thread writes
// cgroup.kill at that time if it does not, and the watch then reports 2.
Napi::Value WatchEvent(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string dir, key;
  int want, kill_after = -1;
  if (!ArgString(info, 0, &dir) || !ArgString(info, 1, &key) || !ArgInt(info, 2, &want)) return env.Undefined();
  if (info.Length() > 3 && !info[3].IsUndefined() && !ArgInt(info, 3, &kill_after)) return env.Undefined();
  Watcher* w = WatcherOf(env);
  if (!w) return ThrowErrno(env, -EINVAL, "watchInit");
  uint32_t token = 0;
  const char* sc = nullptr;
  int rc = w->set.add_event(dir.c_str(), key.c_str(), want, &token, &sc, kill_after < 0 ? -1 : kill_after);
  if (rc < 0) return ThrowErrno(env, rc, sc);
  if (rc == 1) return Napi::Number::New(env, 0);
  w->open++;
  WatchRef(env, w);
  return Napi::Number::New(env, token);
}

// watchRemove(token) -> whether it was open
Napi::Value WatchRemove(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int token;
  if (!ArgInt(info, 0, &token)) return env.Undefined();
  Watcher* w = WatcherOf(env);
  if (!w || !w->set.remove((uint32_t)token)) return Napi::Boolean::New(env, false);
  w->open--;
  WatchRef(env, w);
  return Napi::Boolean::New(env, true);
}

// watchCheck(token) -> 1 holds now, 0 not yet; throws for a failed or unknown watch
Napi::Value WatchCheck(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int token;
  if (!ArgInt(info, 0, &token)) return env.Undefined();
  Watcher* w = WatcherOf(env);
  int rc = w ? w->set.check_now((uint32_t)token) : -ENOENT;
  if (rc < 0) return ThrowErrno(env, rc, "poll");
  return Napi::Number::New(env, rc);
}

// ---- tree copy ----------------------------------------------------------------

// copyTree(src, dst, flags): a promise of the copy's counts; rejects with
// errno, syscall and `where` (the entry that failed, relative to src).
class CopyWorker : public Napi::AsyncWorker {
 public:
  CopyWorker(Napi::Env env, std::string src, std::string dst, int flags)
      : Napi::AsyncWorker(env, "snapproc.copyTree"), deferred_(Napi::Promise::Deferred::New(env)), src_(std::move(src)), dst_(std::move(dst)), flags_(flags) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { rc_ = copy_tree(src_.c_str(), dst_.c_str(), flags_, &stats_, &where_, &syscall_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (rc_ < 0) {
      Napi::Error err = Napi::Error::New(env, std::string(syscall_ ? syscall_ : "copy") + " failed");
      err.Set("errno", Napi::Number::New(env, rc_));
      err.Set("syscall", Napi::String::New(env, syscall_ ? syscall_ : "copy"));
      err.Set("where", Napi::String::New(env, where_));
      deferred_.Reject(err.Value());
      return;
    }
    static const char* methods[] = {"files", "snapshot", "files-into-subvolume"};
    Napi::Object o = Napi::Object::New(env);
    o.Set("method", Napi::String::New(env, methods[stats_.method]));
    o.Set("files", Napi::Number::New(env, static_cast<double>(stats_.files)));
    o.Set("dirs", Napi::Number::New(env, static_cast<double>(stats_.dirs)));
    o.Set("symlinks", Napi::Number::New(env, static_cast<double>(stats_.symlinks)));
    o.Set("special", Napi::Number::New(env, static_cast<double>(stats_.special)));
    o.Set("hardlinks", Napi::Number::New(env, static_cast<double>(stats_.hardlinks)));
    o.Set("cloned", Napi::Number::New(env, static_cast<double>(stats_.cloned)));
    o.Set("bytes", Napi::Number::New(env, static_cast<double>(stats_.bytes)));
    o.Set("xattrs", Napi::Number::New(env, static_cast<double>(stats_.xattrs)));
    deferred_.Resolve(o);
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string src_, dst_;
  int flags_;
  int rc_ = 0;
  copy_stats stats_;
  std::string where_;
  const char* syscall_ = nullptr;
};

Napi::Value CopyTree(const Napi::CallbackInfo& info) {
  std::string src, dst;
  int flags = 0;
  if (!ArgString(info, 0, &src) || !ArgString(info, 1, &dst) || !ArgInt(info, 2, &flags)) return info.Env().Undefined();
  CopyWorker* w = new CopyWorker(info.Env(), src, dst, flags);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// ---- standby copy (issue 12): standbyMake, standbyApply, standbyInfo ------------

// standbyMake(src, dir, label, flags, cancel: Int32Array on a SharedArrayBuffer):
// a promise of the copy's counts; cancel[0] = 1 stops it (rejects ECANCELED).
class StandbyMakeWorker : public Napi::AsyncWorker {
 public:
  StandbyMakeWorker(Napi::Env env, std::string src, std::string dir, std::string label, int flags, Napi::Int32Array cancel)
      : Napi::AsyncWorker(env, "snapproc.standbyMake"), deferred_(Napi::Promise::Deferred::New(env)), src_(std::move(src)), dir_(std::move(dir)), label_(std::move(label)), flags_(flags),
        cancel_(Napi::Persistent(cancel)), flag_(reinterpret_cast<std::atomic<int32_t>*>(cancel.Data())) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { rc_ = standby_make(src_.c_str(), dir_.c_str(), label_.c_str(), flags_, flag_, &stats_, &where_, &syscall_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (rc_ < 0) {
      Napi::Error err = Napi::Error::New(env, std::string(syscall_ ? syscall_ : "standby") + " failed");
      err.Set("errno", Napi::Number::New(env, rc_));
      err.Set("syscall", Napi::String::New(env, syscall_ ? syscall_ : "standby"));
      err.Set("where", Napi::String::New(env, where_));
      deferred_.Reject(err.Value());
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("files", Napi::Number::New(env, static_cast<double>(stats_.files)));
    o.Set("dirs", Napi::Number::New(env, static_cast<double>(stats_.dirs)));
    o.Set("cloned", Napi::Number::New(env, static_cast<double>(stats_.cloned)));
    o.Set("bytes", Napi::Number::New(env, static_cast<double>(stats_.bytes)));
    deferred_.Resolve(o);
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string src_, dir_, label_;
  int flags_;
  Napi::Reference<Napi::Int32Array> cancel_;  // keeps the flag's memory alive while the job runs
  std::atomic<int32_t>* flag_;
  int rc_ = 0;
  copy_stats stats_;
  std::string where_;
  const char* syscall_ = nullptr;
};

Napi::Value StandbyMake(const Napi::CallbackInfo& info) {
  std::string src, dir, label;
  int flags = 0;
  if (!ArgString(info, 0, &src) || !ArgString(info, 1, &dir) || !ArgString(info, 2, &label) || !ArgInt(info, 3, &flags)) return info.Env().Undefined();
  if (info.Length() < 5 || !info[4].IsTypedArray() || info[4].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array) {
    Napi::TypeError::New(info.Env(), "argument 4 must be an Int32Array").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  StandbyMakeWorker* w = new StandbyMakeWorker(info.Env(), src, dir, label, flags, info[4].As<Napi::Int32Array>());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// standbyApply(src, dir, label, marginNs, flags): a promise of the checking
// pass's counts; rejects with errno (ESTALE: unusable, `why` says why).
class StandbyApplyWorker : public Napi::AsyncWorker {
 public:
  StandbyApplyWorker(Napi::Env env, std::string src, std::string dir, std::string label, int64_t margin, int flags)
      : Napi::AsyncWorker(env, "snapproc.standbyApply"), deferred_(Napi::Promise::Deferred::New(env)), src_(std::move(src)), dir_(std::move(dir)), label_(std::move(label)), margin_(margin), flags_(flags) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override { rc_ = standby_apply(src_.c_str(), dir_.c_str(), label_.c_str(), margin_, flags_, &stats_, &where_, &syscall_, &why_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (rc_ < 0) {
      Napi::Error err = Napi::Error::New(env, why_.empty() ? std::string(syscall_ ? syscall_ : "standby") + " failed" : why_);
      err.Set("errno", Napi::Number::New(env, rc_));
      err.Set("syscall", Napi::String::New(env, syscall_ ? syscall_ : "standby"));
      err.Set("where", Napi::String::New(env, where_));
      err.Set("why", Napi::String::New(env, why_));
      deferred_.Reject(err.Value());
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("entries", Napi::Number::New(env, static_cast<double>(stats_.entries)));
    o.Set("kept", Napi::Number::New(env, static_cast<double>(stats_.kept)));
    o.Set("recreated", Napi::Number::New(env, static_cast<double>(stats_.recreated)));
    o.Set("removed", Napi::Number::New(env, static_cast<double>(stats_.removed)));
    o.Set("fixed", Napi::Number::New(env, static_cast<double>(stats_.fixed)));
    o.Set("retimed", Napi::Number::New(env, static_cast<double>(stats_.retimed)));
    o.Set("linkSetsRedone", Napi::Number::New(env, static_cast<double>(stats_.link_sets_redone)));
    deferred_.Resolve(o);
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::string src_, dir_, label_;
  int64_t margin_;
  int flags_;
  int rc_ = 0;
  standby_stats stats_;
  std::string where_, why_;
  const char* syscall_ = nullptr;
};

Napi::Value StandbyApply(const Napi::CallbackInfo& info) {
  std::string src, dir, label;
  int flags = 0;
  if (!ArgString(info, 0, &src) || !ArgString(info, 1, &dir) || !ArgString(info, 2, &label) || info.Length() < 4 || !info[3].IsNumber() || !ArgInt(info, 4, &flags)) return info.Env().Undefined();
  int64_t margin = info[3].As<Napi::Number>().Int64Value();
  StandbyApplyWorker* w = new StandbyApplyWorker(info.Env(), src, dir, label, margin, flags);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// standbyInfo(dir): { label, startedNs } of a complete standby, or { why } when there is none to use.
Napi::Value StandbyInfo(const Napi::CallbackInfo& info) {
  std::string dir;
  if (!ArgString(info, 0, &dir)) return info.Env().Undefined();
  std::string label, why;
  int64_t started = 0;
  Napi::Object o = Napi::Object::New(info.Env());
  if (standby_info(dir.c_str(), &label, &started, &why) < 0) {
    o.Set("why", Napi::String::New(info.Env(), why));
  } else {
    o.Set("label", Napi::String::New(info.Env(), label));
    o.Set("startedNs", Napi::Number::New(info.Env(), static_cast<double>(started)));
  }
  return o;
}

Napi::Value MakeDataDir(const Napi::CallbackInfo& info) {
  std::string path;
  int mode = 0, sub = 0;
  if (!ArgString(info, 0, &path) || !ArgInt(info, 1, &mode) || !ArgInt(info, 2, &sub)) return info.Env().Undefined();
  const char* sc = nullptr;
  int rc = make_data_dir(path.c_str(), mode, sub, &sc);
  if (rc < 0) return ThrowErrno(info.Env(), rc, sc);
  return Napi::Boolean::New(info.Env(), rc == 1);
}

// procInfo(pids, revisions, viaStat): { ids: Int32Array [pid, ppid, pgid]*,
// start: Float64Array | undefined, zombie: Uint8Array | undefined, revisions: (string|null)[] | undefined }
// (start and zombie only when read from /proc/PID/stat).
Napi::Value ProcInfo(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsTypedArray()) {
    Napi::TypeError::New(info.Env(), "argument 0 must be an Int32Array").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  Napi::Env env = info.Env();
  Napi::Int32Array in = info[0].As<Napi::Int32Array>();
  bool revisions = info.Length() > 1 && info[1].ToBoolean().Value();
  bool via_stat = info.Length() > 2 && info[2].ToBoolean().Value();
  std::vector<int32_t> pids(in.Data(), in.Data() + in.ElementLength());
  std::vector<proc_info> out;
  const char* sc = nullptr;
  int rc = proc_info_of(pids, revisions, &out, via_stat, &sc);
  if (rc < 0) return ThrowErrno(env, rc, sc);
  bool all_stat = true;
  for (const proc_info& pi : out) all_stat = all_stat && pi.has_start;
  Napi::Int32Array ids = Napi::Int32Array::New(env, out.size() * 3);
  Napi::Float64Array start = Napi::Float64Array::New(env, all_stat ? out.size() : 0);
  Napi::Uint8Array zombie = Napi::Uint8Array::New(env, all_stat ? out.size() : 0);
  Napi::Array revs = Napi::Array::New(env, revisions ? out.size() : 0);
  for (size_t i = 0; i < out.size(); i++) {
    ids[i * 3] = out[i].pid;
    ids[i * 3 + 1] = out[i].ppid;
    ids[i * 3 + 2] = out[i].pgid;
    if (all_stat) {
      start[i] = static_cast<double>(out[i].start);
      zombie[i] = out[i].zombie ? 1 : 0;
    }
    if (revisions) revs.Set(static_cast<uint32_t>(i), out[i].revision.empty() ? env.Null() : Napi::String::New(env, out[i].revision));
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("ids", ids);
  if (all_stat) {
    o.Set("start", start);
    o.Set("zombie", zombie);
  }
  if (revisions) o.Set("revisions", revs);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("procInfo", Napi::Function::New(env, ProcInfo));
  exports.Set("copyTree", Napi::Function::New(env, CopyTree));
  exports.Set("makeDataDir", Napi::Function::New(env, MakeDataDir));
  exports.Set("standbyMake", Napi::Function::New(env, StandbyMake));
  exports.Set("standbyApply", Napi::Function::New(env, StandbyApply));
  exports.Set("standbyInfo", Napi::Function::New(env, StandbyInfo));
  exports.Set("kill", Napi::Function::New(env, Kill));
  exports.Set("killpg", Napi::Function::New(env, Killpg));
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen));
  exports.Set("pidfdGetfd", Napi::Function::New(env, PidfdGetfd));
  exports.Set("pidfdSendSignal", Napi::Function::New(env, PidfdSendSignal));
  exports.Set("pidfdExitStatus", Napi::Function::New(env, PidfdExitStatus));
  exports.Set("cancelWait", Napi::Function::New(env, CancelWait));
  exports.Set("syncfs", Napi::Function::New(env, Syncfs));
  exports.Set("bindReadonly", Napi::Function::New(env, BindReadonly));
  exports.Set("spawnInCgroup", Napi::Function::New(env, SpawnInCgroup));
  exports.Set("setChildSubreaper", Napi::Function::New(env, SetChildSubreaper));
  exports.Set("getChildSubreaper", Napi::Function::New(env, GetChildSubreaper));
  exports.Set("setPdeathsig", Napi::Function::New(env, SetPdeathsig));
  exports.Set("getPdeathsig", Napi::Function::New(env, GetPdeathsig));
  exports.Set("setName", Napi::Function::New(env, SetName));
  exports.Set("getName", Napi::Function::New(env, GetName));
  exports.Set("readProcs", Napi::Function::New(env, ReadProcs));
  exports.Set("procIds", Napi::Function::New(env, ProcIds));
  exports.Set("signalAll", Napi::Function::New(env, SignalAll));
  exports.Set("signalFrozen", Napi::Function::New(env, SignalFrozen));
  exports.Set("writeFreeze", Napi::Function::New(env, WriteFreeze));
  exports.Set("lockFile", Napi::Function::New(env, LockFile));
  exports.Set("peerCred", Napi::Function::New(env, PeerCred));
  exports.Set("connectUnix", Napi::Function::New(env, ConnectUnix));
  exports.Set("listenUnix", Napi::Function::New(env, ListenUnix));
  exports.Set("listenTcp", Napi::Function::New(env, ListenTcp));
  exports.Set("socketName", Napi::Function::New(env, SocketName));
  exports.Set("notifyListen", Napi::Function::New(env, NotifyListen));
  exports.Set("notifyClose", Napi::Function::New(env, NotifyClose));
  exports.Set("reapChildren", Napi::Function::New(env, ReapChildren));
  exports.Set("watchInit", Napi::Function::New(env, WatchInit));
  exports.Set("watchPidfd", Napi::Function::New(env, WatchPidfd));
  exports.Set("watchEvent", Napi::Function::New(env, WatchEvent));
  exports.Set("watchRemove", Napi::Function::New(env, WatchRemove));
  exports.Set("watchCheck", Napi::Function::New(env, WatchCheck));
  exports.Set("execve", Napi::Function::New(env, Execve));
  exports.Set("resetNiceOnFork", Napi::Function::New(env, ResetNiceOnFork));
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrim));
  return exports;
}

}  // namespace

NODE_API_MODULE(snapproc, Init)
