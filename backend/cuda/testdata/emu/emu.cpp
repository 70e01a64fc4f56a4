// emu.cpp: a CPU stand-in for the GPU, driven by the package's emulator
// test over stdin/stdout. It runs the backend's real kernel sources (built
// with shim.h) with each CUDA thread as a fiber, and implements the device
// memory and the cuBLAS GEMM semantics the backend relies on, validating
// every argument the way the driver and cuBLAS do. Device memory is mmap'ed
// with guard pages right after the end of each allocation (and freed memory
// is unmapped), so an out-of-bounds access or a use after free crashes
// with the kernel's name instead of passing silently.
//
// Build (the test does it): g++ -std=c++17 -O1 -include shim.h emu.cpp
// with kernels.inc (prelude + modules) and registry.inc (kernel table)
// generated next to it. x86-64 Linux only (the fiber switch is assembly).

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <chrono>
#include <algorithm>
#include <cstdarg>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

// ---- fibers ----------------------------------------------------------

enum FiberState { RUN, WAIT_BLOCK, WAIT_WARP, DONE };

struct EmuFiber {
  void* sp;
  uint3 tid;
  int linear;
  FiberState state;
  int shfl_phase;  // which of the warp's two shuffle buffers the next shuffle uses
};

EmuFiber* emu_cur;
uint3 emu_blockIdx;
dim3 emu_blockDim, emu_gridDim;
static void* sched_sp;
static const char* cur_kernel = "";
static std::vector<uint64_t> warp_slots;  // two buffers of kSlots slots per warp
static const size_t kSlots = 64;
static int block_warps;
static std::function<void()> cur_body;

// emu_switch saves the callee-saved general registers on the current
// stack, stores the stack pointer in *save and resumes the context whose
// stack pointer is to. The SSE and x87 control words are shared by every
// fiber (no kernel changes the rounding mode), so they are not switched:
// ldmxcsr and fldcw would cost more than the rest of the switch.
extern "C" void emu_switch(void** save, void* to);
asm(R"(
.text
.globl emu_switch
.type emu_switch,@function
emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
)");

void emu_fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "emu: kernel %s", cur_kernel);
  if (emu_cur)
    std::fprintf(stderr, " block (%u,%u,%u) thread (%u,%u,%u)", emu_blockIdx.x, emu_blockIdx.y, emu_blockIdx.z,
                 emu_cur->tid.x, emu_cur->tid.y, emu_cur->tid.z);
  std::fprintf(stderr, ": ");
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
  std::fflush(stderr);
  _exit(3);
}

uint3& emu_tid() { return emu_cur->tid; }
int emu_linear_tid() { return emu_cur->linear; }
// emu_shfl_slots returns the shuffle buffer of the calling lane's warp for
// its next shuffle. Consecutive shuffles alternate between two buffers, so
// a shuffle needs one warp barrier instead of two: a buffer is written
// again only two shuffles later, after a barrier that every lane reaches
// only once it has read the buffer.
uint64_t* emu_shfl_slots(int warp) {
  const int ph = emu_cur->shfl_phase;
  emu_cur->shfl_phase ^= 1;
  return &warp_slots[((size_t)ph * block_warps + warp) * kSlots];
}

static std::vector<EmuFiber> fibers;

// The lanes of the running warp, in this pass's order, and the position
// of the running one: a lane that stops (at a barrier or at its end)
// switches straight to the next lane that can run, and the last one back
// to the scheduler, so a warp barrier costs one switch per lane.
static std::vector<int> lane_order;
static size_t lane_pos;

static void stop_and_switch() {
  EmuFiber* me = emu_cur;
  while (++lane_pos < lane_order.size()) {
    EmuFiber* f = &fibers[lane_order[lane_pos]];
    if (f->state == RUN) {
      emu_cur = f;
      emu_switch(&me->sp, f->sp);
      return;
    }
  }
  emu_switch(&me->sp, sched_sp);
}
void emu_barrier_block() {
  emu_cur->state = WAIT_BLOCK;
  stop_and_switch();
}
void emu_barrier_warp() {
  emu_cur->state = WAIT_WARP;
  stop_and_switch();
}

static void fiber_main() {
  cur_body();
  emu_cur->state = DONE;
  stop_and_switch();
  emu_fail("a finished fiber was resumed");
}

static int order_mode;  // 0 natural, 1 shuffle, 2 reverse (EMU_ORDER)
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng() {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static const size_t kStack = 256 << 10;
static std::vector<char*> stacks;

static void* fresh_stack(int i) {
  while ((int)stacks.size() <= i) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char* s = (char*)mmap(nullptr, kStack + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED) emu_fail("cannot map a fiber stack");
    mprotect(s, page, PROT_NONE);  // stack overflow guard
    stacks.push_back(s + page);
  }
  // The stacks are page aligned, so their tops would all fall in the same
  // L1 cache set and evict each other at every switch; staggering them by
  // a cache line per fiber spreads them over the 64 sets.
  uintptr_t top = ((uintptr_t)stacks[i] + kStack - (uintptr_t)(i % 64) * 64) & ~(uintptr_t)15;
  uint64_t* sp = (uint64_t*)top;
  *--sp = 0;                       // padding: the return address slot must be 16-byte aligned
  *--sp = (uint64_t)&fiber_main;   // "returned" to by the first switch
  for (int r = 0; r < 6; ++r) *--sp = 0;  // rbp rbx r12 r13 r14 r15
  return sp;
}

// run_lanes runs every runnable lane of lane_order once, each up to its
// next barrier or its end.
static void run_lanes() {
  for (lane_pos = 0; lane_pos < lane_order.size(); ++lane_pos) {
    EmuFiber* f = &fibers[lane_order[lane_pos]];
    if (f->state == RUN) {
      emu_cur = f;
      emu_switch(&sched_sp, f->sp);
      break;
    }
  }
  emu_cur = nullptr;
}

// order_fill sets order to lo .. hi-1 in the scheduling order of EMU_ORDER.
static void order_fill(std::vector<int>& order, int lo, int hi) {
  order.resize(hi - lo);
  const int n = hi - lo;
  for (int i = 0; i < n; ++i) order[i] = order_mode == 2 ? hi - 1 - i : lo + i;
  if (order_mode == 1) {
    for (int i = n - 1; i > 0; --i) std::swap(order[i], order[rng() % (i + 1)]);
  }
}

// run_block executes one block to completion, switching fibers at barriers.
// It runs one warp at a time up to the next __syncthreads (or the end):
// the warp's lanes run to their next barrier, and while all of them wait
// at a warp barrier (shuffle, __syncwarp, WMMA) they are released and run
// again. Then the next warp runs, and once every thread waits at
// __syncthreads the block is released. EMU_ORDER=shuffle runs the warps and
// the lanes between two barriers in a random order (reverse: backwards), so
// a missing barrier that the natural order happens to satisfy still shows
// up.
static void run_block(int n) {
  for (int i = 0; i < n; ++i) {
    EmuFiber& f = fibers[i];
    f.linear = i;
    f.tid = uint3{(unsigned)(i % emu_blockDim.x), (unsigned)(i / emu_blockDim.x % emu_blockDim.y),
                  (unsigned)(i / (emu_blockDim.x * emu_blockDim.y))};
    f.state = RUN;
    f.shfl_phase = 0;
    f.sp = fresh_stack(i);
  }
  const int nwarps = (n + 31) / 32;
  std::vector<int> worder;
  for (;;) {
    order_fill(worder, 0, nwarps);
    for (int w : worder) {
      const int lo = w * 32, hi = lo + 32 < n ? lo + 32 : n;
      for (;;) {
        order_fill(lane_order, lo, hi);
        run_lanes();
        int waiting = 0, exited = 0;
        for (int i = lo; i < hi; ++i) {
          waiting += fibers[i].state == WAIT_WARP;
          exited += fibers[i].state == DONE;
        }
        if (waiting == 0) break;
        if (waiting != hi - lo) {
          emu_fail("warp %d: %d lanes at a warp barrier (shuffle, __syncwarp or wmma), %d exited, %d at __syncthreads",
                   w, waiting, exited, hi - lo - waiting - exited);
        }
        for (int i = lo; i < hi; ++i) fibers[i].state = RUN;
      }
    }
    int done = 0, block = 0;
    for (int i = 0; i < n; ++i) {
      done += fibers[i].state == DONE;
      block += fibers[i].state == WAIT_BLOCK;
    }
    if (done == n) return;
    if (block == n) {
      for (int i = 0; i < n; ++i) fibers[i].state = RUN;
      continue;
    }
    emu_fail("__syncthreads reached by %d of %d threads (%d exited)", block, n, done);
  }
}

// ---- kernels ---------------------------------------------------------

#include "kernels.inc"

struct KernelEntry {
  const char* name;
  std::function<void(void**)> call;
};

template <class... A, size_t... I>
static void invoke(void (*f)(A...), void** p, std::index_sequence<I...>) {
  f(*reinterpret_cast<typename std::decay<A>::type*>(p[I])...);
}
template <class... A>
static KernelEntry entry(const char* name, void (*f)(A...)) {
  return KernelEntry{name, [f](void** p) { invoke(f, p, std::index_sequence_for<A...>{}); }};
}
template <class... A>
static size_t arity(void (*)(A...)) {
  return sizeof...(A);
}

static std::map<std::string, std::pair<KernelEntry, size_t>> registry;
static void reg(KernelEntry e, size_t n) { registry[e.name] = {e, n}; }
#define REG(k) reg(entry(#k, k), arity(k));
static void register_kernels() {
#include "registry.inc"
}

// ---- device memory ---------------------------------------------------

struct Alloc {
  char* base;   // mapping start
  size_t span;  // mapping length
  size_t size;  // requested bytes
};
static std::map<uint64_t, Alloc> allocs;  // by user pointer
static const size_t kMaxAlloc = (size_t)1 << 31;

static uint64_t mem_alloc(size_t n) {
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  const size_t data = (n + page - 1) / page * page;
  const size_t span = data + 2 * page;
  char* m = (char*)mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return 0;
  mprotect(m, page, PROT_NONE);
  mprotect(m + page + data, page, PROT_NONE);
  char* p = m + page + data - n;  // the allocation ends at the guard page
  std::memset(p, 0xff, n);        // NaN in every dtype: unwritten outputs show
  allocs[(uint64_t)p] = Alloc{m, span, n};
  return (uint64_t)p;
}

// in_alloc reports whether [p, p+n) lies inside one live allocation.
static bool in_alloc(uint64_t p, uint64_t n) {
  auto it = allocs.upper_bound(p);
  if (it == allocs.begin()) return false;
  --it;
  return p >= it->first && p + n <= it->first + it->second.size;
}

// ---- cuBLAS GEMM (column-major) -----------------------------------------

static float loadT(const char* base, int64_t i, int dt) {
  if (dt == 0) {
    float f;
    std::memcpy(&f, base + 4 * i, 4);
    return f;
  }
  unsigned short h;
  std::memcpy(&h, base + 2 * i, 2);
  return dt == 2 ? h2f(h) : __uint_as_float(((uint32_t)h) << 16);
}
static void storeT(char* base, int64_t i, int dt, float v) {
  if (dt == 0) {
    std::memcpy(base + 4 * i, &v, 4);
    return;
  }
  unsigned short h = dt == 2 ? f2h(v) : __float2bfloat16_rn(v).x;
  std::memcpy(base + 2 * i, &h, 2);
}
static int esize(int dt) { return dt == 0 ? 4 : 2; }

struct Gemm {
  int32_t ta, tb, m, n, k;
  float alpha, beta;
  uint64_t a;
  int32_t at, lda;
  int64_t sa;
  uint64_t b;
  int32_t bt, ldb;
  int64_t sb;
  uint64_t c;
  int32_t ct, ldc;
  int64_t sc;
  int32_t batch, compute;
};

static std::string gemm_err;

// returns a cublasStatus_t
static int run_gemm(const Gemm& g) {
  char buf[512];
  auto fail = [&](int code, const char* why) {
    std::snprintf(buf, sizeof buf, "%s (m=%d n=%d k=%d lda=%d ldb=%d ldc=%d types %d %d %d batch %d)", why, g.m, g.n,
                  g.k, g.lda, g.ldb, g.ldc, g.at, g.bt, g.ct, g.batch);
    gemm_err = buf;
    return code;
  };
  const int rowsA = g.ta ? g.k : g.m, colsA = g.ta ? g.m : g.k;
  const int rowsB = g.tb ? g.n : g.k, colsB = g.tb ? g.k : g.n;
  if (g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 1) return fail(7, "negative size");
  if (g.lda < (rowsA > 1 ? rowsA : 1) || g.ldb < (rowsB > 1 ? rowsB : 1) || g.ldc < (g.m > 1 ? g.m : 1))
    return fail(7, "leading dimension too small");
  if (g.compute != 68 && g.compute != 77) return fail(15, "compute type");
  if (g.at != g.bt) return fail(15, "A and B types differ");
  const bool ok = (g.at == 0 && g.ct == 0) || (g.at == 2 && (g.ct == 2 || g.ct == 0)) ||
                  (g.at == 14 && (g.ct == 14 || g.ct == 0));
  if (!ok) return fail(15, "type combination");
  const int at = g.at == 14 ? 1 : g.at, ct = g.ct == 14 ? 1 : g.ct;  // 0 f32, 2 f16, 1 bf16 (loadT codes)
  if (g.m == 0 || g.n == 0) return 0;
  for (int bi = 0; bi < g.batch; ++bi) {
    const uint64_t A = g.a + (uint64_t)(bi * g.sa * esize(g.at == 14 ? 2 : g.at));
    const uint64_t B = g.b + (uint64_t)(bi * g.sb * esize(g.bt == 14 ? 2 : g.bt));
    const uint64_t C = g.c + (uint64_t)(bi * g.sc * esize(g.ct == 14 ? 2 : g.ct));
    const int ea = esize(g.at == 14 ? 2 : g.at), ec = esize(g.ct == 14 ? 2 : g.ct);
    if (g.k > 0 && !in_alloc(A, ((uint64_t)(colsA - 1) * g.lda + rowsA) * ea)) return fail(14, "A outside its allocation");
    if (g.k > 0 && !in_alloc(B, ((uint64_t)(colsB - 1) * g.ldb + rowsB) * ea)) return fail(14, "B outside its allocation");
    if (!in_alloc(C, ((uint64_t)(g.n - 1) * g.ldc + g.m) * ec)) return fail(14, "C outside its allocation");
    for (int j = 0; j < g.n; ++j)
      for (int i = 0; i < g.m; ++i) {
        double s = 0;
        for (int l = 0; l < g.k; ++l) {
          const int64_t ia = g.ta ? (int64_t)l + (int64_t)i * g.lda : (int64_t)i + (int64_t)l * g.lda;
          const int64_t ib = g.tb ? (int64_t)j + (int64_t)l * g.ldb : (int64_t)l + (int64_t)j * g.ldb;
          s += (double)loadT((const char*)A, ia, at) * (double)loadT((const char*)B, ib, at);
        }
        const int64_t ic = (int64_t)i + (int64_t)j * g.ldc;
        double v = (double)g.alpha * s;
        if (g.beta != 0) v += (double)g.beta * loadT((const char*)C, ic, ct);
        storeT((char*)C, ic, ct, (float)v);
      }
  }
  return 0;
}

// ---- profile -------------------------------------------------------------

// EMU_PROFILE=FILE writes, when the emulator quits, the launches, threads
// and seconds spent per kernel (and in GEMMs): where an emulated test
// spends its time.
struct ProfEntry {
  uint64_t calls = 0, threads = 0;
  double seconds = 0;
};
static std::map<std::string, ProfEntry> profile;
static const char* profile_path;
static double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
static void write_profile() {
  if (!profile_path) return;
  FILE* f = std::fopen(profile_path, "w");
  if (!f) return;
  std::vector<std::pair<double, std::string>> by;
  for (auto& e : profile) by.push_back({e.second.seconds, e.first});
  std::sort(by.rbegin(), by.rend());
  for (auto& b : by) {
    const ProfEntry& e = profile[b.second];
    std::fprintf(f, "%-28s %8llu launches %12llu threads %9.3f s\n", b.second.c_str(), (unsigned long long)e.calls,
                 (unsigned long long)e.threads, e.seconds);
  }
  std::fclose(f);
}

// ---- protocol ------------------------------------------------------------

static void rd(void* p, size_t n) {
  if (n && std::fread(p, 1, n, stdin) != n) _exit(0);  // the test closed the pipe
}
template <class T>
static T rd() {
  T v;
  rd(&v, sizeof v);
  return v;
}
static void wr(const void* p, size_t n) { std::fwrite(p, 1, n, stdout); }
template <class T>
static void wr(T v) {
  wr(&v, sizeof v);
}
static void reply(int32_t code, const std::string& msg = "") {
  wr(code);
  if (code != 0) {
    wr((uint32_t)msg.size());
    wr(msg.data(), msg.size());
  }
}

static void on_segv(int, siginfo_t* si, void*) {
  char buf[512];
  int n = std::snprintf(buf, sizeof buf, "emu: kernel %s: invalid memory access at %p", cur_kernel, si->si_addr);
  if (emu_cur)
    n += std::snprintf(buf + n, sizeof buf - n, " in block (%u,%u,%u) thread (%u,%u,%u)", emu_blockIdx.x,
                       emu_blockIdx.y, emu_blockIdx.z, emu_cur->tid.x, emu_cur->tid.y, emu_cur->tid.z);
  n += std::snprintf(buf + n, sizeof buf - n, "\n");
  (void)!write(2, buf, n);
  _exit(4);
}

int main() {
  static char altstack[1 << 16];
  stack_t ss{};
  ss.ss_sp = altstack;
  ss.ss_size = sizeof altstack;
  sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_sigaction = on_segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
  register_kernels();
  profile_path = std::getenv("EMU_PROFILE");
  if (profile_path && !*profile_path) profile_path = nullptr;
  if (const char* o = std::getenv("EMU_ORDER")) {
    order_mode = std::strcmp(o, "shuffle") == 0 ? 1 : std::strcmp(o, "reverse") == 0 ? 2 : 0;
  }
  for (;;) {
    std::fflush(stdout);
    const char op = rd<char>();
    switch (op) {
      case 'A': {
        const uint64_t n = rd<uint64_t>();
        if (n == 0 || n > kMaxAlloc) {
          reply(2, "out of memory (emulator limit)");
          wr<uint64_t>(0);
          break;
        }
        const uint64_t p = mem_alloc(n);
        reply(p ? 0 : 2, "out of memory");
        wr(p);
        break;
      }
      case 'F': {
        const uint64_t p = rd<uint64_t>();
        auto it = allocs.find(p);
        if (it == allocs.end()) {
          reply(1, "cuMemFree of an address that is not an allocation");
          break;
        }
        munmap(it->second.base, it->second.span);
        allocs.erase(it);
        reply(0);
        break;
      }
      case 'Z': {
        const uint64_t p = rd<uint64_t>(), n = rd<uint64_t>();
        if (!in_alloc(p, n)) {
          reply(1, "memset outside an allocation");
          break;
        }
        std::memset((void*)p, 0, n);
        reply(0);
        break;
      }
      case 'W': {
        const uint64_t p = rd<uint64_t>(), n = rd<uint64_t>();
        std::vector<char> tmp(n);
        rd(tmp.data(), n);
        if (!in_alloc(p, n)) {
          reply(1, "upload outside an allocation");
          break;
        }
        std::memcpy((void*)p, tmp.data(), n);
        reply(0);
        break;
      }
      case 'R': {
        const uint64_t p = rd<uint64_t>(), n = rd<uint64_t>();
        if (!in_alloc(p, n)) {
          reply(1, "download outside an allocation");
          break;
        }
        reply(0);
        wr((const void*)p, n);
        break;
      }
      case 'L': {
        const uint32_t nl = rd<uint32_t>();
        std::string name(nl, '\0');
        rd(&name[0], nl);
        dim3 grid{rd<uint32_t>(), rd<uint32_t>(), rd<uint32_t>()};
        dim3 block{rd<uint32_t>(), rd<uint32_t>(), rd<uint32_t>()};
        const uint32_t na = rd<uint32_t>();
        std::vector<std::vector<char>> args(na);
        std::vector<void*> params(na);
        for (uint32_t i = 0; i < na; ++i) {
          args[i].resize(rd<uint32_t>());
          rd(args[i].data(), args[i].size());
          params[i] = args[i].data();
        }
        auto it = registry.find(name);
        if (it == registry.end()) {
          reply(500, "no kernel " + name);
          break;
        }
        if (it->second.second != na) {
          reply(1, "kernel " + name + " takes " + std::to_string(it->second.second) + " arguments, got " +
                       std::to_string(na));
          break;
        }
        const uint64_t threads = (uint64_t)block.x * block.y * block.z;
        if (!grid.x || !grid.y || !grid.z || grid.y > 65535 || grid.z > 65535 || !threads || threads > 1024) {
          reply(1, "invalid launch configuration for " + name);
          break;
        }
        cur_kernel = it->second.first.name;
        emu_blockDim = block;
        emu_gridDim = grid;
        fibers.resize(threads);
        block_warps = (int)((threads + 31) / 32);
        warp_slots.assign((size_t)2 * block_warps * kSlots, 0);
        auto& call = it->second.first.call;
        void** pp = params.data();
        cur_body = [&call, pp] { call(pp); };
        const double t0 = profile_path ? now_s() : 0;
        for (unsigned z = 0; z < grid.z; ++z)
          for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
              emu_blockIdx = uint3{x, y, z};
              run_block((int)threads);
            }
        cur_kernel = "";
        if (profile_path) {
          ProfEntry& pe = profile[name];
          pe.calls++;
          pe.threads += threads * grid.x * grid.y * grid.z;
          pe.seconds += now_s() - t0;
        }
        reply(0);
        break;
      }
      case 'G': {
        Gemm g;
        g.ta = rd<int32_t>();
        g.tb = rd<int32_t>();
        g.m = rd<int32_t>();
        g.n = rd<int32_t>();
        g.k = rd<int32_t>();
        g.alpha = rd<float>();
        g.beta = rd<float>();
        g.a = rd<uint64_t>();
        g.at = rd<int32_t>();
        g.lda = rd<int32_t>();
        g.sa = rd<int64_t>();
        g.b = rd<uint64_t>();
        g.bt = rd<int32_t>();
        g.ldb = rd<int32_t>();
        g.sb = rd<int64_t>();
        g.c = rd<uint64_t>();
        g.ct = rd<int32_t>();
        g.ldc = rd<int32_t>();
        g.sc = rd<int64_t>();
        g.batch = rd<int32_t>();
        g.compute = rd<int32_t>();
        const double t0 = profile_path ? now_s() : 0;
        const int r = run_gemm(g);
        if (profile_path) {
          ProfEntry& pe = profile["(gemm)"];
          pe.calls++;
          pe.threads += (uint64_t)g.m * g.n * g.batch;
          pe.seconds += now_s() - t0;
        }
        reply(r, gemm_err);
        break;
      }
      case 'Q':
        write_profile();
        return 0;
      default:
        std::fprintf(stderr, "emu: unknown request %d\n", op);
        return 2;
    }
  }
}
