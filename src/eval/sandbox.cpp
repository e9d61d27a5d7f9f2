#include "eval/sandbox.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "core/timer.h"

namespace specq::eval {
namespace {

namespace fs = std::filesystem;

std::string tail_of_file(const std::string& path, size_t limit) {
  std::ifstream in(path, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  return text.size() > limit ? text.substr(text.size() - limit) : text;
}

// Between fork and exec only async-signal-safe calls: everything the child needs is built before.
[[noreturn]] void exec_child(char* const* argv, char* const* envp, const char* dir, int stdin_fd, int out_fd,
                             int err_fd, int status_fd, const SandboxOptions& options) {
  setpgid(0, 0);
  // A new network namespace holds only a loopback that is down: no connection leaves the child. Without
  // privileges, a user namespace makes it possible where the kernel allows unprivileged ones.
  char net = 'n';
  if (unshare(CLONE_NEWNET) == 0 || unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0) net = 'N';
  (void)!write(status_fd, &net, 1);
  auto limit = [](int resource, rlim_t value) {
    const rlimit r{value, value};
    setrlimit(resource, &r);
  };
  limit(RLIMIT_AS, rlim_t(options.memory_bytes));
  limit(RLIMIT_FSIZE, rlim_t(options.file_size_bytes));
  limit(RLIMIT_CORE, 0);
  limit(RLIMIT_CPU, rlim_t(options.timeout_seconds) + 2);
  if (chdir(dir) != 0 || dup2(stdin_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) {
    const char e = 'E';
    (void)!write(status_fd, &e, 1);
    _exit(127);
  }
  execve(argv[0], argv, envp);
  const char e = 'E';
  (void)!write(status_fd, &e, 1);
  _exit(127);
}

}  // namespace

SandboxResult run_sandboxed(const std::vector<std::string>& args, const std::string& scratch_dir,
                            const std::string& stdin_text, const SandboxOptions& options) {
  SPECQ_CHECK(!args.empty() && fs::path(args[0]).is_absolute(), "sandbox: the program must be an absolute path");
  std::vector<char*> argv;
  for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  const std::vector<std::string> env = {"PATH=/usr/bin:/bin", "HOME=" + scratch_dir, "TMPDIR=" + scratch_dir,
                                        "LANG=C.UTF-8", "PYTHONHASHSEED=0", "PYTHONDONTWRITEBYTECODE=1",
                                        "OMP_NUM_THREADS=1"};
  std::vector<char*> envp;
  for (const std::string& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const std::string out_path = scratch_dir + "/stdout.txt", err_path = scratch_dir + "/stderr.txt";
  const int out_fd = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const int err_fd = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int stdin_pipe[2] = {-1, -1}, status_pipe[2] = {-1, -1};
  const bool pipes_ok = pipe2(stdin_pipe, O_CLOEXEC) == 0 && pipe2(status_pipe, O_CLOEXEC) == 0;
  auto close_all = [&] {
    for (int fd : {out_fd, err_fd, stdin_pipe[0], stdin_pipe[1], status_pipe[0], status_pipe[1]})
      if (fd >= 0) close(fd);
  };
  if (out_fd < 0 || err_fd < 0 || !pipes_ok) {
    close_all();
    fail("sandbox: cannot set up the child's files in {}: {}", scratch_dir, std::strerror(errno));
  }

  Stopwatch clock;
  const pid_t pid = fork();
  if (pid < 0) {
    close_all();
    fail("sandbox: fork failed: {}", std::strerror(errno));
  }
  if (pid == 0)
    exec_child(argv.data(), envp.data(), scratch_dir.c_str(), stdin_pipe[0], out_fd, err_fd, status_pipe[1],
               options);
  setpgid(pid, pid);  // also from the parent, so the group exists before any kill
  close(stdin_pipe[0]);
  close(status_pipe[1]);
  close(out_fd);
  close(err_fd);
  signal(SIGPIPE, SIG_IGN);  // the child may exit without reading its input
  (void)!write(stdin_pipe[1], stdin_text.data(), stdin_text.size());
  close(stdin_pipe[1]);
  std::string status;
  char c;
  while (read(status_pipe[0], &c, 1) == 1) status += c;
  close(status_pipe[0]);

  SandboxResult result;
  result.network_namespace = status.find('N') != std::string::npos;
  int wait_status = 0;
  while (true) {
    const pid_t done = waitpid(pid, &wait_status, WNOHANG);
    if (done == pid) break;
    if (clock.seconds() > options.timeout_seconds) {
      result.timed_out = true;
      kill(-pid, SIGKILL);
      waitpid(pid, &wait_status, 0);
      break;
    }
    usleep(2000);
  }
  result.seconds = clock.seconds();
  kill(-pid, SIGKILL);  // anything the program left behind in its group
  if (WIFEXITED(wait_status)) result.exit_code = WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) result.signal = WTERMSIG(wait_status);
  SPECQ_CHECK(status.find('E') == std::string::npos, "sandbox: cannot start {}", args[0]);
  result.out = tail_of_file(out_path, 64 << 10);
  result.err = tail_of_file(err_path, 64 << 10);
  return result;
}

ScratchDir::ScratchDir(const std::string& prefix) {
  std::string pattern = (fs::temp_directory_path() / (prefix + "-XXXXXX")).string();
  SPECQ_CHECK(mkdtemp(pattern.data()) != nullptr, "cannot make a scratch directory under {}: {}",
              fs::temp_directory_path().string(), std::strerror(errno));
  path_ = fs::canonical(pattern).string();
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

}  // namespace specq::eval
