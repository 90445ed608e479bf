// binding.cc: the N-API glue. Converts values and nothing else: each function
// calls one plain function of sys.cc and, on failure, throws an Error that
// carries `errno` (negative) and `syscall`; src/native.ts turns that into a
// Node-shaped SnapprocError. Blocking waits run on a thread of their own and
// settle a promise through a thread-safe function (libuv's pool stays free).
#include <napi.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <thread>

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
  std::thread([tsfn, wait, work]() mutable {
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

Napi::Value PidfdWait(const Napi::CallbackInfo& info) {
  int fd, timeout;
  if (!ArgInt(info, 0, &fd) || !ArgInt(info, 1, &timeout)) return info.Env().Undefined();
  return StartWait(info.Env(), "snapproc.pidfdWait", [fd, timeout](int cancel, const char** sc) {
    return sys_pidfd_wait(fd, timeout, cancel, sc);
  });
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

Napi::Value SetFrozen(const Napi::CallbackInfo& info) {
  std::string dir;
  int frozen, timeout;
  if (!ArgString(info, 0, &dir) || !ArgInt(info, 1, &frozen) || !ArgInt(info, 2, &timeout))
    return info.Env().Undefined();
  return StartWait(info.Env(), "snapproc.setFrozen", [dir, frozen, timeout](int, const char** sc) {
    return cg_set_frozen(dir.c_str(), frozen, timeout, sc);
  });
}

Napi::Value WaitEvent(const Napi::CallbackInfo& info) {
  std::string dir, key;
  int want, timeout;
  if (!ArgString(info, 0, &dir) || !ArgString(info, 1, &key) || !ArgInt(info, 2, &want) ||
      !ArgInt(info, 3, &timeout))
    return info.Env().Undefined();
  return StartWait(info.Env(), "snapproc.waitEvent", [dir, key, want, timeout](int cancel, const char** sc) {
    return cg_wait_event(dir.c_str(), key.c_str(), want, timeout, cancel, sc);
  });
}

// Synchronous: the whole freeze-signal-thaw runs in one call, no JS in between.
Napi::Value SignalAll(const Napi::CallbackInfo& info) {
  std::string dir;
  int sig, timeout;
  if (!ArgString(info, 0, &dir) || !ArgInt(info, 1, &sig) || !ArgInt(info, 2, &timeout))
    return info.Env().Undefined();
  bool also_cont = info.Length() > 3 && info[3].ToBoolean();
  fanout_result res;
  const char* sc = nullptr;
  int rc = cg_signal_all(dir.c_str(), sig, also_cont ? 1 : 0, timeout, &res, &sc);
  if (rc < 0) return ThrowErrno(info.Env(), rc, sc);
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("signalled", res.signalled);
  out.Set("gone", res.gone);
  out.Set("cgroups", res.cgroups);
  out.Set("frozen", Napi::Boolean::New(info.Env(), res.frozen == 1));
  return out;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("kill", Napi::Function::New(env, Kill));
  exports.Set("killpg", Napi::Function::New(env, Killpg));
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen));
  exports.Set("pidfdSendSignal", Napi::Function::New(env, PidfdSendSignal));
  exports.Set("pidfdExitStatus", Napi::Function::New(env, PidfdExitStatus));
  exports.Set("pidfdWait", Napi::Function::New(env, PidfdWait));
  exports.Set("cancelWait", Napi::Function::New(env, CancelWait));
  exports.Set("setChildSubreaper", Napi::Function::New(env, SetChildSubreaper));
  exports.Set("getChildSubreaper", Napi::Function::New(env, GetChildSubreaper));
  exports.Set("setPdeathsig", Napi::Function::New(env, SetPdeathsig));
  exports.Set("getPdeathsig", Napi::Function::New(env, GetPdeathsig));
  exports.Set("setName", Napi::Function::New(env, SetName));
  exports.Set("getName", Napi::Function::New(env, GetName));
  exports.Set("readProcs", Napi::Function::New(env, ReadProcs));
  exports.Set("procIds", Napi::Function::New(env, ProcIds));
  exports.Set("setFrozen", Napi::Function::New(env, SetFrozen));
  exports.Set("waitEvent", Napi::Function::New(env, WaitEvent));
  exports.Set("signalAll", Napi::Function::New(env, SignalAll));
  return exports;
}

}  // namespace

NODE_API_MODULE(snapproc, Init)
