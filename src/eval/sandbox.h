// Runs an untrusted program (a HumanEval completion with its tests) in a child process: its own
// process group (killed whole on timeout), a scratch working directory, a clean environment, resource
// limits, and no network (a fresh network namespace where the kernel allows one).
#pragma once
#include <string>
#include <vector>

namespace specq::eval {

struct SandboxOptions {
  double timeout_seconds = 10.0;
  long memory_bytes = 4L << 30;    // RLIMIT_AS
  long file_size_bytes = 16L << 20;  // RLIMIT_FSIZE: a print loop cannot fill the disk
};

struct SandboxResult {
  bool timed_out = false;
  int exit_code = -1;   // -1 when killed by a signal
  int signal = 0;
  double seconds = 0.0;
  std::string out, err;  // the last 64 KiB of each
  bool network_namespace = false;  // whether the child ran in its own (empty) network namespace
};

// Runs `argv` (argv[0] an absolute path) with cwd = `scratch_dir`, HOME and TMPDIR = `scratch_dir`,
// `stdin_text` on its standard input. A failure to start the child is an Error; anything the child
// does (crash, hang, exit code) is reported in the result.
SandboxResult run_sandboxed(const std::vector<std::string>& argv, const std::string& scratch_dir,
                            const std::string& stdin_text, const SandboxOptions& options);

// A fresh directory under the system temp dir, removed with its contents on destruction.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix);
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace specq::eval
