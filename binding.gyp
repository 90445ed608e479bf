{
  "targets": [
    {
      "target_name": "snapproc",
      "sources": ["native/sys.cc", "native/supervise.cc", "native/binding.cc", "native/spawn.cc", "native/copy.cc", "native/procinfo.cc", "native/watch.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS", "_GNU_SOURCE"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fno-exceptions"],
      "cflags_cc!": ["-fno-rtti"],
      "ldflags": ["-Wl,-z,now"]
    },
    {
      "target_name": "snapproc-exec",
      "type": "executable",
      "sources": ["native/exec-launcher.c"],
      "defines": ["_GNU_SOURCE"],
      "cflags_c": ["-std=gnu11", "-Wall", "-Wextra", "-O2"],
      "ldflags": ["-Wl,--as-needed"]
    }
  ]
}
