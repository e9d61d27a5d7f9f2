#include "io/torch_checkpoint.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <map>
#include <span>
#include <string_view>

#include "core/error.h"

namespace specq {
namespace {

uint64_t read_le(const uint8_t* p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// ---- zip: the central directory of stored (uncompressed) entries, zip64 included ----

struct ZipEntry {
  uint64_t offset = 0, size = 0;  // of the entry's bytes in the file
};

std::map<std::string, ZipEntry> read_zip(std::span<const uint8_t> file, const std::string& path) {
  auto need = [&](uint64_t offset, uint64_t length, const char* what) {
    SPECQ_CHECK(offset <= file.size() && length <= file.size() - offset, "'{}': truncated zip ({})", path, what);
  };
  // End of central directory: the last "PK\5\6" within the final 64 KiB + 22 bytes.
  SPECQ_CHECK(file.size() >= 22, "'{}' is not a zip archive (torch.save format)", path);
  int64_t eocd = -1;
  const int64_t lowest = std::max<int64_t>(0, int64_t(file.size()) - 22 - 65535);
  for (int64_t i = int64_t(file.size()) - 22; i >= lowest; --i)
    if (read_le(file.data() + i, 4) == 0x06054b50u) {
      eocd = i;
      break;
    }
  SPECQ_CHECK(eocd >= 0, "'{}' is not a zip archive (torch.save format)", path);
  uint64_t count = read_le(file.data() + eocd + 10, 2), cd_offset = read_le(file.data() + eocd + 16, 4);
  if ((count == 0xffff || cd_offset == 0xffffffffu) && eocd >= 20 &&
      read_le(file.data() + eocd - 20, 4) == 0x07064b50u) {  // zip64 locator -> zip64 end record
    const uint64_t record = read_le(file.data() + eocd - 20 + 8, 8);
    need(record, 56, "zip64 end record");
    SPECQ_CHECK(read_le(file.data() + record, 4) == 0x06064b50u, "'{}': bad zip64 end record", path);
    count = read_le(file.data() + record + 32, 8);
    cd_offset = read_le(file.data() + record + 48, 8);
  }
  std::map<std::string, ZipEntry> entries;
  uint64_t at = cd_offset;
  for (uint64_t e = 0; e < count; ++e) {
    need(at, 46, "central directory");
    const uint8_t* h = file.data() + at;
    SPECQ_CHECK(read_le(h, 4) == 0x02014b50u, "'{}': bad zip central directory entry", path);
    const uint64_t method = read_le(h + 10, 2), name_len = read_le(h + 28, 2), extra_len = read_le(h + 30, 2),
                   comment_len = read_le(h + 32, 2);
    uint64_t size = read_le(h + 20, 4), raw_size = read_le(h + 24, 4), local = read_le(h + 42, 4);
    need(at + 46, name_len + extra_len, "central directory names");
    const std::string name(reinterpret_cast<const char*>(h + 46), name_len);
    for (uint64_t x = 0; x + 4 <= extra_len;) {  // zip64 extra field: the 32-bit fields that overflowed
      const uint8_t* field = h + 46 + name_len + x;
      const uint64_t id = read_le(field, 2), len = read_le(field + 2, 2);
      SPECQ_CHECK(x + 4 + len <= extra_len, "'{}': bad zip extra field for '{}'", path, name);
      if (id == 1) {
        uint64_t pos = 4;
        for (uint64_t* v : {&raw_size, &size, &local})
          if (*v == 0xffffffffu && pos + 8 <= 4 + len) {
            *v = read_le(field + pos, 8);
            pos += 8;
          }
      }
      x += 4 + len;
    }
    SPECQ_CHECK(method == 0 && size == raw_size, "'{}': zip entry '{}' is compressed; torch.save stores entries",
                path, name);
    need(local, 30, "local header");
    const uint8_t* l = file.data() + local;
    SPECQ_CHECK(read_le(l, 4) == 0x04034b50u, "'{}': bad zip local header for '{}'", path, name);
    const uint64_t data = local + 30 + read_le(l + 26, 2) + read_le(l + 28, 2);
    need(data, size, "entry data");
    entries[name] = {data, size};
    at += 46 + name_len + extra_len + comment_len;
  }
  return entries;
}

// ---- the pickle subset ----

struct Value;
using ValuePtr = std::shared_ptr<Value>;

struct Value {
  enum class Kind { None, Bool, Int, Float, String, Tuple, List, Dict, Global, Storage, Tensor, Mark };
  Kind kind = Kind::None;
  int64_t i = 0;
  double f = 0.0;
  std::string s;                                  // String, Global ("module.name"), Storage key
  std::vector<ValuePtr> items;                    // Tuple, List
  std::vector<std::pair<ValuePtr, ValuePtr>> map; // Dict (insertion order)
  DType dtype = DType::F32;                       // Storage, Tensor
  int64_t offset = 0;                             // Tensor: storage offset in elements
  std::vector<int64_t> shape, stride;             // Tensor
  std::string storage;                            // Tensor: storage key
  int depth = 0;                                  // containers: nesting below this value
};

// State dicts nest a few levels; a deeper pickle is refused before its destruction could recurse
// deeply enough to overflow the stack.
constexpr int kMaxPickleDepth = 64;

ValuePtr make(Value::Kind kind) {
  auto v = std::make_shared<Value>();
  v->kind = kind;
  return v;
}

class PickleReader {
 public:
  PickleReader(std::span<const uint8_t> bytes, std::string source) : bytes_(bytes), source_(std::move(source)) {}

  ValuePtr run() {
    while (true) {
      const uint8_t op = byte();
      switch (op) {
        case 0x80: byte(); break;             // PROTO
        case 0x95: take(8); break;            // FRAME
        case '.': return pop();               // STOP
        case '(': push(make(Value::Kind::Mark)); break;
        case ')': push(make(Value::Kind::Tuple)); break;
        case ']': push(make(Value::Kind::List)); break;
        case '}': push(make(Value::Kind::Dict)); break;
        case 'N': push(make(Value::Kind::None)); break;
        case 0x88: case 0x89: {               // NEWTRUE, NEWFALSE
          auto v = make(Value::Kind::Bool);
          v->i = op == 0x88;
          push(v);
          break;
        }
        case 'K': push_int(int64_t(read_le(take(1), 1))); break;
        case 'M': push_int(int64_t(read_le(take(2), 2))); break;
        case 'J': push_int(int64_t(int32_t(uint32_t(read_le(take(4), 4))))); break;
        case 0x8a: {                          // LONG1: little-endian two's complement
          const int n = byte();
          SPECQ_CHECK(n <= 8, "'{}': integer of {} bytes is too large", source_, n);
          uint64_t v = n > 0 ? read_le(take(size_t(n)), n) : 0;
          if (n > 0 && n < 8 && (v >> (8 * n - 1)) != 0) v |= ~uint64_t(0) << (8 * n);
          push_int(int64_t(v));
          break;
        }
        case 'G': {                           // BINFLOAT, big-endian
          const uint8_t* p = take(8);
          uint64_t bits = 0;
          for (int k = 0; k < 8; ++k) bits = (bits << 8) | p[k];
          auto v = make(Value::Kind::Float);
          std::memcpy(&v->f, &bits, 8);
          push(v);
          break;
        }
        case 'X': push_string(size_t(read_le(take(4), 4))); break;  // BINUNICODE
        case 0x8c: push_string(byte()); break;                      // SHORT_BINUNICODE
        case 'T': push_string(size_t(read_le(take(4), 4))); break;  // BINSTRING
        case 'U': push_string(byte()); break;                       // SHORT_BINSTRING
        case 'c': {                                                 // GLOBAL module\nname\n
          const std::string module = line(), name = line();
          push_global(module, name);
          break;
        }
        case 0x93: {                                                // STACK_GLOBAL
          const ValuePtr name = pop(), module = pop();
          SPECQ_CHECK(name->kind == Value::Kind::String && module->kind == Value::Kind::String,
                      "'{}': STACK_GLOBAL needs two strings", source_);
          push_global(module->s, name->s);
          break;
        }
        case 'q': memo_[read_le(take(1), 1)] = top(); break;        // BINPUT
        case 'r': memo_[read_le(take(4), 4)] = top(); break;        // LONG_BINPUT
        case 0x94: memo_[memo_.size()] = top(); break;              // MEMOIZE
        case 'h': push(memo(read_le(take(1), 1))); break;           // BINGET
        case 'j': push(memo(read_le(take(4), 4))); break;           // LONG_BINGET
        case 't': {                                                 // TUPLE
          auto v = make(Value::Kind::Tuple);
          v->items = pop_to_mark();
          for (const ValuePtr& item : v->items) nest(*v, *item);
          push(v);
          break;
        }
        case 0x85: case 0x86: case 0x87: {                          // TUPLE1..3
          auto v = make(Value::Kind::Tuple);
          v->items.resize(size_t(op - 0x84));
          for (size_t k = v->items.size(); k-- > 0;) v->items[k] = pop();
          for (const ValuePtr& item : v->items) nest(*v, *item);
          push(v);
          break;
        }
        case 'a': {                                                 // APPEND
          const ValuePtr item = pop();
          const ValuePtr list = list_top();
          nest(*list, *item);
          list->items.push_back(item);
          break;
        }
        case 'e': {                                                 // APPENDS
          std::vector<ValuePtr> items = pop_to_mark();
          const ValuePtr list = list_top();
          for (const ValuePtr& item : items) nest(*list, *item);
          list->items.insert(list->items.end(), items.begin(), items.end());
          break;
        }
        case 's': {                                                 // SETITEM
          const ValuePtr value = pop(), key = pop();
          const ValuePtr dict = dict_top();
          nest(*dict, *key);
          nest(*dict, *value);
          dict->map.emplace_back(key, value);
          break;
        }
        case 'u': {                                                 // SETITEMS
          std::vector<ValuePtr> items = pop_to_mark();
          SPECQ_CHECK(items.size() % 2 == 0, "'{}': SETITEMS with an odd number of items", source_);
          const ValuePtr dict = dict_top();
          for (const ValuePtr& item : items) nest(*dict, *item);
          for (size_t k = 0; k < items.size(); k += 2) dict->map.emplace_back(items[k], items[k + 1]);
          break;
        }
        case 'b': pop(); break;  // BUILD: object state (an OrderedDict's _metadata) is not needed
        case 'Q': push(persistent_load(pop())); break;              // BINPERSID
        case 'R': {                                                 // REDUCE
          const ValuePtr args = pop(), callable = pop();
          push(reduce(*callable, *args));
          break;
        }
        default:
          fail("'{}': pickle opcode 0x{:02x} is not supported by this reader (it builds tensors only)", source_, op);
      }
    }
  }

 private:
  uint8_t byte() { return *take(1); }
  const uint8_t* take(size_t n) {
    SPECQ_CHECK(n <= bytes_.size() - pos_, "'{}': the pickle ends early", source_);
    const uint8_t* p = bytes_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::string line() {
    std::string s;
    for (uint8_t c = byte(); c != '\n'; c = byte()) s += char(c);
    return s;
  }
  void push(ValuePtr v) { stack_.push_back(std::move(v)); }
  ValuePtr top() {
    SPECQ_CHECK(!stack_.empty(), "'{}': pickle stack underflow", source_);
    return stack_.back();
  }
  ValuePtr pop() {
    ValuePtr v = top();
    stack_.pop_back();
    return v;
  }
  ValuePtr memo(uint64_t key) {
    const auto it = memo_.find(key);
    SPECQ_CHECK(it != memo_.end(), "'{}': pickle memo key {} is missing", source_, key);
    return it->second;
  }
  std::vector<ValuePtr> pop_to_mark() {
    size_t mark = stack_.size();
    while (mark > 0 && stack_[mark - 1]->kind != Value::Kind::Mark) --mark;
    SPECQ_CHECK(mark > 0, "'{}': pickle stack underflow (no mark)", source_);
    std::vector<ValuePtr> items(std::make_move_iterator(stack_.begin() + std::ptrdiff_t(mark)),
                                std::make_move_iterator(stack_.end()));
    stack_.resize(mark - 1);
    return items;
  }
  // `container` now holds `item`: its nesting depth covers the item's.
  void nest(Value& container, const Value& item) {
    container.depth = std::max(container.depth, item.depth + 1);
    SPECQ_CHECK(container.depth <= kMaxPickleDepth, "'{}': the pickle nests deeper than {} levels", source_,
                kMaxPickleDepth);
  }
  ValuePtr list_top() {
    SPECQ_CHECK(top()->kind == Value::Kind::List, "'{}': APPEND to something that is not a list", source_);
    return top();
  }
  ValuePtr dict_top() {
    SPECQ_CHECK(top()->kind == Value::Kind::Dict, "'{}': SETITEM on something that is not a dict", source_);
    return top();
  }
  void push_int(int64_t i) {
    auto v = make(Value::Kind::Int);
    v->i = i;
    push(v);
  }
  void push_string(size_t n) {
    auto v = make(Value::Kind::String);
    const uint8_t* p = take(n);
    v->s.assign(reinterpret_cast<const char*>(p), n);
    push(v);
  }
  void push_global(const std::string& module, const std::string& name) {
    static const std::map<std::string, DType> storages = {
        {"torch.FloatStorage", DType::F32}, {"torch.HalfStorage", DType::F16}, {"torch.BFloat16Storage", DType::BF16},
        {"torch.LongStorage", DType::I64},  {"torch.IntStorage", DType::I32}};
    const std::string full = module + "." + name;
    const bool known = storages.count(full) != 0 || full == "collections.OrderedDict" ||
                       full == "torch._utils._rebuild_tensor_v2" || full == "torch._utils._rebuild_parameter";
    SPECQ_CHECK(known, "'{}' refers to '{}', which this reader refuses (it builds tensors only)", source_, full);
    auto v = make(Value::Kind::Global);
    v->s = full;
    if (const auto it = storages.find(full); it != storages.end()) v->dtype = it->second;
    push(v);
  }
  // ('storage', <torch.XStorage>, key, location, numel)
  ValuePtr persistent_load(const ValuePtr& pid) {
    SPECQ_CHECK(pid->kind == Value::Kind::Tuple && pid->items.size() == 5 &&
                    pid->items[0]->kind == Value::Kind::String && pid->items[0]->s == "storage" &&
                    pid->items[1]->kind == Value::Kind::Global && pid->items[1]->s.ends_with("Storage") &&
                    pid->items[2]->kind == Value::Kind::String,
                "'{}': unexpected persistent id in the pickle", source_);
    auto v = make(Value::Kind::Storage);
    v->dtype = pid->items[1]->dtype;
    v->s = pid->items[2]->s;
    return v;
  }
  std::vector<int64_t> ints(const ValuePtr& tuple) {
    SPECQ_CHECK(tuple->kind == Value::Kind::Tuple, "'{}': expected a tuple of integers", source_);
    std::vector<int64_t> out;
    for (const ValuePtr& item : tuple->items) {
      SPECQ_CHECK(item->kind == Value::Kind::Int, "'{}': expected a tuple of integers", source_);
      out.push_back(item->i);
    }
    return out;
  }
  ValuePtr reduce(const Value& callable, const Value& args) {
    SPECQ_CHECK(callable.kind == Value::Kind::Global && args.kind == Value::Kind::Tuple,
                "'{}': REDUCE needs a global and a tuple", source_);
    if (callable.s == "collections.OrderedDict") return make(Value::Kind::Dict);
    if (callable.s == "torch._utils._rebuild_parameter") {  // (tensor, requires_grad, hooks)
      SPECQ_CHECK(!args.items.empty() && args.items[0]->kind == Value::Kind::Tensor,
                  "'{}': _rebuild_parameter without a tensor", source_);
      return args.items[0];
    }
    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, ...)
    SPECQ_CHECK(callable.s == "torch._utils._rebuild_tensor_v2" && args.items.size() >= 4 &&
                    args.items[0]->kind == Value::Kind::Storage && args.items[1]->kind == Value::Kind::Int,
                "'{}': cannot call '{}' here", source_, callable.s);
    auto t = make(Value::Kind::Tensor);
    t->storage = args.items[0]->s;
    t->dtype = args.items[0]->dtype;
    t->offset = args.items[1]->i;
    t->shape = ints(args.items[2]);
    t->stride = ints(args.items[3]);
    return t;
  }

  std::span<const uint8_t> bytes_;
  std::string source_;
  size_t pos_ = 0;
  std::vector<ValuePtr> stack_;
  std::map<uint64_t, ValuePtr> memo_;
};

}  // namespace

TorchCheckpoint::TorchCheckpoint(const std::string& path) : file_(std::make_shared<MappedFile>(path)) {
  tensors_ = parse_torch_checkpoint(std::span<const uint8_t>(file_->data(), file_->size()), path);
}

std::vector<TorchTensor> parse_torch_checkpoint(std::span<const uint8_t> file, const std::string& path) {
  std::vector<TorchTensor> tensors;
  const std::map<std::string, ZipEntry> entries = read_zip(file, path);
  std::string prefix;
  for (const auto& [name, entry] : entries)
    if (name.ends_with("/data.pkl") && name.find('/') == name.size() - 9) prefix = name.substr(0, name.size() - 8);
  SPECQ_CHECK(!prefix.empty(), "'{}' has no <prefix>/data.pkl: not a torch.save checkpoint", path);
  const ZipEntry pkl = entries.at(prefix + "data.pkl");
  const ValuePtr root = PickleReader(file.subspan(pkl.offset, pkl.size), path).run();
  // A state dict, or one bare tensor (torch.save(tensor): FR-Spec's and SGLang's token maps), named "".
  std::vector<std::pair<ValuePtr, ValuePtr>> items;
  if (root->kind == Value::Kind::Tensor) {
    items.emplace_back(make(Value::Kind::String), root);
  } else {
    SPECQ_CHECK(root->kind == Value::Kind::Dict, "'{}': the pickle is neither a state dict nor a tensor", path);
    items = root->map;
  }
  for (const auto& [key, value] : items) {
    SPECQ_CHECK(key->kind == Value::Kind::String && value->kind == Value::Kind::Tensor,
                "'{}': state dict entries must map names to tensors", path);
    const auto storage = entries.find(prefix + "data/" + value->storage);
    SPECQ_CHECK(storage != entries.end(), "'{}': storage '{}' of '{}' is missing", path, value->storage, key->s);
    // Only contiguous row-major tensors (what state dicts hold).
    SPECQ_CHECK(value->stride.size() == value->shape.size(), "'{}': tensor '{}' has a bad stride", path, key->s);
    int64_t numel = 1, expected_stride = 1;
    for (size_t d = value->shape.size(); d-- > 0;) {
      SPECQ_CHECK(value->shape[d] >= 0 && (value->shape[d] <= 1 || value->stride[d] == expected_stride),
                  "'{}': tensor '{}' is not contiguous", path, key->s);
      // The storage bounds every product: stop before it could overflow.
      SPECQ_CHECK(value->shape[d] <= int64_t(storage->second.size) / std::max<int64_t>(numel, 1),
                  "'{}': tensor '{}' overruns its storage", path, key->s);
      expected_stride *= value->shape[d];
      numel *= value->shape[d];
    }
    const uint64_t esize = dtype_size(value->dtype);
    const uint64_t capacity = storage->second.size / esize;
    SPECQ_CHECK(value->offset >= 0 && uint64_t(numel) <= capacity && uint64_t(value->offset) <= capacity - uint64_t(numel),
                "'{}': tensor '{}' overruns its storage", path, key->s);
    tensors.push_back({key->s, value->dtype, value->shape,
                       file.data() + storage->second.offset + uint64_t(value->offset) * esize});
  }
  return tensors;
}

const TorchTensor* TorchCheckpoint::find(const std::string& name) const {
  for (const TorchTensor& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

}  // namespace specq
