/**
 * The native task spawner (#20): spawner.ts's protocol in a small C program, compiled on the host
 * where a C compiler is found and cached by the hash of its source, used before the Perl one.
 *
 * Why: Perl can only fork, and a fork copies the spawner's page tables and then faults on every
 * page either side writes (0.35–0.45 ms of CPU per task here, a third of a task's cost). The C
 * spawner starts each task with `clone3(CLONE_VM | CLONE_VFORK)` on a stack of its own: the child
 * shares the spawner's memory, does the same steps as the Perl child (setsid, the cgroup —
 * `CLONE_INTO_CGROUP` —, limits, the task user without groups and with no new privileges, the
 * parent-death signal, cwd, descriptors) with nothing but syscalls, and execs; the spawner waits
 * for that exec, then goes on. Where no compiler is found, the compile fails, or the binary does
 * not start, the Perl spawner is used as before. One difference: the spawner waits for each
 * child's exec, so a task cgroup that someone froze holds the next spawns until it thaws.
 *
 * The binary lives in the first of the given cache directories that is this user's own and not
 * writable by others (a root worker must not run a program someone else could replace), named by
 * the source's hash, written under a temporary name and renamed into place (workers compiling at
 * once each end with a complete file).
 * @module
 */
import { type CommandRunner, DenoCommandRunner } from "../command/mod.ts";
import { seconds } from "../time.ts";
import { findUtil } from "./process_tree.ts";

/** What the worker's TaskSpawner asks of a native spawner: its binary, or null where none. */
export interface NativeSpawner {
  binary(): Promise<string | null>;
}

/** How long a compile may take before it is given up (the Perl spawner is used then). */
const COMPILE_TIMEOUT = seconds(60);

/**
 * Compiles (or finds) the native spawner in the first usable of `cacheDirs`; `log` hears why a
 * directory was passed over or a compile failed (the Perl spawner is used then), and where one
 * compiled.
 */
export function nativeSpawner(
  cacheDirs: readonly string[],
  log: (line: string) => void = () => {},
  runner: CommandRunner = new DenoCommandRunner(),
): NativeSpawner {
  let found: Promise<string | null> | undefined;
  return {
    binary: () => found ??= findOrCompile(cacheDirs, runner, log),
  };
}

/**
 * Where a worker keeps the binary: this user's cache (`$XDG_CACHE_HOME/iris`, else
 * `~/.cache/iris`; one compile per host and source), else the worker's own directory (a worker
 * without access to the environment, as in local mode).
 */
export function nativeSpawnerCacheDirs(rootDir: string): string[] {
  const dirs: string[] = [];
  try {
    const xdg = Deno.env.get("XDG_CACHE_HOME");
    const home = Deno.env.get("HOME");
    if (xdg?.startsWith("/")) dirs.push(`${xdg}/iris`);
    else if (home?.startsWith("/")) dirs.push(`${home}/.cache/iris`);
  } catch {
    // No access to the environment.
  }
  dirs.push(`${rootDir}/spawner`);
  return dirs;
}

/** Binaries found or compiled by this process, by path: one compile per directory. */
const compiled = new Map<string, Promise<boolean>>();

async function findOrCompile(
  cacheDirs: readonly string[],
  runner: CommandRunner,
  log: (line: string) => void,
): Promise<string | null> {
  // x86_64 only: the clone3 trampoline below is tested there (aarch64 keeps the Perl spawner).
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") return null;
  const compiler = findUtil("cc") ?? findUtil("gcc") ?? findUtil("clang");
  if (!compiler) return null;
  let uid: number | null;
  try {
    uid = Deno.uid();
  } catch {
    return null; // no permission to tell whose files are whose
  }
  if (uid === null) return null;
  const hash = await sourceHash();
  for (const dir of cacheDirs) {
    const binary = `${dir}/iris-task-spawner-${hash}`;
    let ok = compiled.get(binary);
    if (!ok) {
      ok = ensureBinary(dir, binary, compiler, uid, runner, log).catch((err) => {
        log(
          `native task spawner not used from ${dir}: ${err instanceof Error ? err.message : err}`,
        );
        return false;
      });
      compiled.set(binary, ok);
    }
    if (await ok) return binary;
  }
  return null;
}

async function sourceHash(): Promise<string> {
  const data = new TextEncoder().encode(`${Deno.build.arch}\0${NATIVE_SPAWNER_SOURCE}`);
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(digest.subarray(0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
}

/** True when `info` is this user's and no one else may write it. */
function ownedSafely(info: Deno.FileInfo, uid: number): boolean {
  return info.uid === uid && ((info.mode ?? 0o777) & 0o022) === 0;
}

/**
 * Throws unless every directory above `dir` belongs to this user or root and is writable by no one
 * else, or is sticky (as /tmp): otherwise someone else could move `dir` away and put their own in
 * its place between the check and the exec.
 */
async function checkAncestors(dir: string, uid: number): Promise<void> {
  const real = await Deno.realPath(dir);
  for (let at = real; at !== "/";) {
    at = at.slice(0, at.lastIndexOf("/")) || "/";
    const info = await Deno.lstat(at);
    const mode = info.mode ?? 0o777;
    const owner = info.uid === uid || info.uid === 0;
    if (!owner || ((mode & 0o022) !== 0 && (mode & 0o1000) === 0)) {
      throw new Error(`${at}: others may write it, so ${dir} could be replaced`);
    }
  }
}

async function ensureBinary(
  dir: string,
  binary: string,
  compiler: string,
  uid: number,
  runner: CommandRunner,
  log: (line: string) => void,
): Promise<boolean> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const dirInfo = await Deno.lstat(dir);
  if (!dirInfo.isDirectory || !ownedSafely(dirInfo, uid)) {
    throw new Error(`${dir}: not a directory of this user's that only it may write`);
  }
  await checkAncestors(dir, uid);
  try {
    const info = await Deno.lstat(binary);
    if (info.isFile && ownedSafely(info, uid)) return true;
    throw new Error(`${binary}: not a file of this user's that only it may write`);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const temp = `${dir}/.iris-task-spawner-${crypto.randomUUID()}`;
  const started = performance.now();
  try {
    await Deno.writeTextFile(`${temp}.c`, NATIVE_SPAWNER_SOURCE, { mode: 0o600 });
    const result = await runner.run(
      { argv: [compiler, "-O2", "-o", temp, `${temp}.c`] },
      { timeout: COMPILE_TIMEOUT },
    );
    if (result.code !== 0 || result.timedOut) {
      throw new Error(
        `${compiler} failed (${result.timedOut ? "timed out" : `code ${result.code}`}): ${
          result.stderr.trim().split("\n").slice(-3).join(" ")
        }`,
      );
    }
    await Deno.chmod(temp, 0o700);
    await Deno.rename(temp, binary);
    log(
      `compiled the native task spawner into ${binary} (${
        Math.round(performance.now() - started)
      } ms)`,
    );
    return true;
  } finally {
    await Deno.remove(`${temp}.c`).catch(() => {});
    await Deno.remove(temp).catch(() => {});
  }
}

/** The C source (see the module comment; the protocol is SCRIPT's in spawner.ts). */
export const NATIVE_SPAWNER_SOURCE = String.raw`
/* Iris's native task spawner: the protocol of spawner.ts's Perl script, with each task started by
 * clone3(CLONE_VM | CLONE_VFORK) on a stack of its own, so no copy of this process's memory is
 * made (see spawner_native.ts). argv[1]: the worker's pid. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CLONE_INTO_CGROUP_ 0x200000000ULL
#define WINDOW 65536
#define STACK_BYTES (64 * 1024)

struct clone_args_v2 {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
    set_tid_size, cgroup;
};

/* clone3 whose child runs fn(arg) on the given stack, then exits with its result: the parent's
 * stack is never touched by the child (CLONE_VFORK suspends the parent until the exec). */
long iris_clone3(struct clone_args_v2 *args, size_t size, int (*fn)(void *), void *arg);
#if defined(__x86_64__)
__asm__(".text\n.globl iris_clone3\n.type iris_clone3,@function\niris_clone3:\n"
        "  mov %rdx, %r8\n  mov %rcx, %r9\n  mov $435, %eax\n  syscall\n"
        "  test %rax, %rax\n  jnz 1f\n  xor %ebp, %ebp\n  mov %r9, %rdi\n  call *%r8\n"
        "  mov %eax, %edi\n  mov $60, %eax\n  syscall\n  hlt\n1:\n  ret\n");
#else
#error "architecture not supported"
#endif

static pid_t me;
static int null_fd, status_r, status_w, sig_fd, epoll_fd;
static uint32_t cap_header[2] = {0x20080522, 0};
static uint32_t cap_effective[6];
static int have_caps;
static char child_stack[STACK_BYTES] __attribute__((aligned(16)));

/* ---- output records: u32 id, type, u32 length (big-endian), payload ---- */
static char *out_buf;
static size_t out_len, out_cap;

static void out_reserve(size_t more) {
  if (out_len + more <= out_cap) return;
  while (out_len + more > out_cap) out_cap = out_cap ? out_cap * 2 : 65536;
  out_buf = realloc(out_buf, out_cap);
  if (!out_buf) _exit(1);
}

static void put32(char *p, uint32_t v) {
  p[0] = v >> 24, p[1] = v >> 16, p[2] = v >> 8, p[3] = v;
}

static void out(uint32_t id, char type, const void *data, size_t length) {
  out_reserve(9 + length);
  put32(out_buf + out_len, id);
  out_buf[out_len + 4] = type;
  put32(out_buf + out_len + 5, length);
  if (length) memcpy(out_buf + out_len + 9, data, length);
  out_len += 9 + length;
}

static size_t fmt_num(char *p, long long v) {
  char tmp[24];
  size_t n = 0, k = 0;
  int negative = v < 0;
  unsigned long long u = negative ? -(unsigned long long)v : (unsigned long long)v;
  do tmp[n++] = '0' + u % 10; while (u /= 10);
  if (negative) p[k++] = '-';
  while (n) p[k++] = tmp[--n];
  return k;
}

static void out_num(uint32_t id, char type, long long v) {
  char s[24];
  out(id, type, s, fmt_num(s, v));
}

static void out_failure(uint32_t id, const char *stage, int err) {
  char s[64];
  size_t n = strlen(stage);
  memcpy(s, stage, n);
  s[n++] = ' ';
  n += fmt_num(s + n, err);
  out(id, 'F', s, n);
}

static void flush_out(void) {
  size_t at = 0;
  while (at < out_len) {
    ssize_t n = write(1, out_buf + at, out_len - at);
    if (n < 0) {
      if (errno == EINTR) continue;
      _exit(1);
    }
    at += n;
  }
  out_len = 0;
}

/* ---- children and their streams ---- */
struct kid {
  pid_t pid;
  uint32_t id;
  int open_streams; /* 0-2 */
};
static struct kid *kids;
static size_t kid_count, kid_cap;

static struct kid *kid_of(pid_t pid) {
  for (size_t i = 0; i < kid_count; i++)
    if (kids[i].pid == pid) return &kids[i];
  return 0;
}

struct stream {
  uint32_t id;
  char type; /* 'O', 'E'; 0: not a stream */
  pid_t pid;
  long held;
  int reading;
};
static struct stream *streams;
static size_t stream_cap;

static struct stream *stream_at(int fd) {
  if ((size_t)fd >= stream_cap) {
    size_t cap = stream_cap ? stream_cap : 256;
    while ((size_t)fd >= cap) cap *= 2;
    streams = realloc(streams, cap * sizeof *streams);
    if (!streams) _exit(1);
    memset(streams + stream_cap, 0, (cap - stream_cap) * sizeof *streams);
    stream_cap = cap;
  }
  return &streams[fd];
}

static void watch(int fd, int on) {
  struct epoll_event ev = {.events = on ? EPOLLIN : 0, .data.fd = fd};
  epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &ev);
}

static void close_stream(int fd) {
  struct stream *s = stream_at(fd);
  if (!s->type) return;
  char type = s->type == 'O' ? 'o' : 'e';
  s->type = 0;
  epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, 0);
  close(fd);
  out(s->id, type, 0, 0);
  struct kid *k = kid_of(s->pid);
  if (k && k->open_streams > 0) k->open_streams--;
}

/* ---- cgroups: a directory descriptor for clone3, cgroup.procs for a child that joins ---- */
struct cgroup {
  char *path, *procs_path;
  int dir, procs, failures;
};
static struct cgroup *cgroups;
static size_t cgroup_count;

/* (Re)opens a cgroup's descriptors: one removed and made again under the same path makes clone3
 * fail on the old directory. */
static void cgroup_open(struct cgroup *c) {
  if (c->dir >= 0) close(c->dir);
  if (c->procs >= 0) close(c->procs);
  c->dir = open(c->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  c->procs = open(c->procs_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

static struct cgroup *cgroup_of(const char *path, size_t length) {
  for (size_t i = 0; i < cgroup_count; i++)
    if (strlen(cgroups[i].path) == length && !memcmp(cgroups[i].path, path, length))
      return &cgroups[i];
  cgroups = realloc(cgroups, (cgroup_count + 1) * sizeof *cgroups);
  if (!cgroups) _exit(1);
  struct cgroup *c = &cgroups[cgroup_count++];
  c->path = strndup(path, length);
  c->procs_path = malloc(length + 14);
  if (!c->path || !c->procs_path) _exit(1);
  memcpy(c->procs_path, path, length);
  memcpy(c->procs_path + length, "/cgroup.procs", 14);
  c->dir = c->procs = -1;
  cgroup_open(c);
  c->failures = 0;
  return c;
}

/* ---- a spawn ---- */
struct spawn {
  uint32_t id, flags, uid, gid;
  const char *body;
  const char *cwd;
  char **table; /* "/bin/sh", then argv, NULL, the environment, NULL */
  char **envp;
  int out_w, err_w;
  int procs; /* cgroup.procs to write "0" to, or -1 */
  const char *procs_path; /* the same, to open when that write fails */
};

static void child_fail(const struct spawn *s, const char *stage) {
  char why[96];
  int err = errno;
  size_t n = fmt_num(why, s->id);
  why[n++] = ' ';
  size_t l = strlen(stage);
  memcpy(why + n, stage, l);
  n += l;
  why[n++] = ' ';
  n += fmt_num(why + n, err);
  why[n++] = '\n';
  syscall(SYS_write, status_w, why, n);
  syscall(SYS_exit, 127);
}

static void child_limit_failed(const struct spawn *s, const char *what, int at) {
  char why[160];
  int err = errno;
  const struct rlimit *limit = (const struct rlimit *)(s->body + at);
  size_t n = 0;
  const char *parts[] = {"iris: cannot set the task's ", what, " limit to "};
  for (int i = 0; i < 3; i++) {
    size_t l = strlen(parts[i]);
    memcpy(why + n, parts[i], l);
    n += l;
  }
  n += fmt_num(why + n, (long long)limit->rlim_cur);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
  const char *e = strerrordesc_np(err); /* a static table: no locale, no lock */
#else
  const char *e = "errno";
#endif
  if (!e) e = "errno";
  why[n++] = ':';
  why[n++] = ' ';
  size_t l = strlen(e);
  if (l > 60) l = 60;
  memcpy(why + n, e, l);
  n += l;
  why[n++] = '\n';
  syscall(SYS_write, s->err_w, why, n);
  syscall(SYS_exit, 126);
}

/* The child, on child_stack: nothing but syscalls up to the exec (it shares this process's
 * memory until then). */
static int child(void *arg) {
  const struct spawn *s = arg;
  uint64_t dfl[4] = {0, 0, 0, 0}; /* the kernel's struct sigaction: SIG_DFL */
  uint64_t empty = 0;
  syscall(SYS_rt_sigaction, SIGPIPE, dfl, 0, 8);
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty, 0, 8);
  if (syscall(SYS_setsid) < 0) child_fail(s, "setsid");
  if (s->procs_path && (s->procs < 0 || syscall(SYS_write, s->procs, "0", 1) != 1)) {
    /* Not joined is what the old way did too: the worker's other sweeps still find the task. */
    long fd = syscall(SYS_openat, AT_FDCWD, s->procs_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) syscall(SYS_write, fd, "0", 1);
  }
  if ((s->flags & 1) && syscall(SYS_setrlimit, RLIMIT_NPROC, s->body + 40))
    child_limit_failed(s, "processes", 40);
  if ((s->flags & 2) && syscall(SYS_setrlimit, RLIMIT_NOFILE, s->body + 56))
    child_limit_failed(s, "open files", 56);
  if ((s->flags & 4) && syscall(SYS_setrlimit, RLIMIT_FSIZE, s->body + 72))
    child_limit_failed(s, "file size", 72);
  if (s->flags & 8) {
    if (syscall(SYS_setgroups, 0, 0)) child_fail(s, "setgroups");
    if (syscall(SYS_setresgid, s->gid, s->gid, s->gid)) child_fail(s, "setgid");
    if (have_caps) syscall(SYS_prctl, PR_SET_KEEPCAPS, 1, 0, 0, 0);
    if (syscall(SYS_setresuid, s->uid, s->uid, s->uid)) child_fail(s, "setuid");
    if (have_caps) syscall(SYS_capset, cap_header, cap_effective);
    if (syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) child_fail(s, "no_new_privs");
  }
  if (syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)) child_fail(s, "pdeathsig");
  if (syscall(SYS_getppid) != me) syscall(SYS_exit, 127);
  if (syscall(SYS_chdir, s->cwd)) child_fail(s, "chdir");
  if (syscall(SYS_dup3, null_fd, 0, 0) < 0) child_fail(s, "stdin");
  if (syscall(SYS_dup3, s->out_w, 1, 0) < 0) child_fail(s, "stdout");
  if (syscall(SYS_dup3, s->err_w, 2, 0) < 0) child_fail(s, "stderr");
  syscall(SYS_close_range, 3, ~0U, 4 /* CLOSE_RANGE_CLOEXEC */);
  syscall(SYS_execve, s->table[1], s->table + 1, s->envp);
  if (errno == ENOEXEC) {
    /* No #! line: run it with the shell, as execvp(3) does. */
    syscall(SYS_execve, s->table[0], s->table, s->envp);
    errno = ENOEXEC;
  }
  child_fail(s, "exec");
  return 127;
}

static uint32_t le32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return u[0] | u[1] << 8 | u[2] << 16 | (uint32_t)u[3] << 24;
}

static void add_kid(pid_t pid, uint32_t id) {
  if (kid_count == kid_cap) {
    kid_cap = kid_cap ? kid_cap * 2 : 64;
    kids = realloc(kids, kid_cap * sizeof *kids);
    if (!kids) _exit(1);
  }
  kids[kid_count++] = (struct kid){pid, id, 2};
}

/* Starts the task of the spawn request at body (length bytes). */
static void spawn_one(const char *body, uint32_t length) {
  if (length < 96) return;
  struct spawn s;
  s.id = le32(body + 4);
  s.flags = le32(body + 8);
  s.uid = le32(body + 12);
  s.gid = le32(body + 16);
  uint32_t argc = le32(body + 20), cwd = le32(body + 24), cg_at = le32(body + 28),
           cg_length = le32(body + 32), entries = le32(body + 92);
  if (96 + 8ULL * entries > length || cwd >= length || (cg_length && cg_at + cg_length > length) ||
      argc + 2 > entries) {
    out_failure(s.id, "request", EINVAL);
    return;
  }
  s.body = body;
  s.cwd = body + cwd;
  char **table = malloc((entries + 1) * sizeof *table);
  if (!table) _exit(1);
  table[0] = "/bin/sh";
  for (uint32_t k = 0; k < entries; k++) {
    uint64_t at;
    memcpy(&at, body + 96 + 8 * k, 8);
    table[k + 1] = at && at < length ? (char *)body + at : 0;
  }
  s.table = table;
  s.envp = table + 1 + argc + 1;
  int out_pipe[2], err_pipe[2];
  if (pipe2(out_pipe, O_CLOEXEC)) {
    out_failure(s.id, "pipe", errno);
    free(table);
    return;
  }
  if (pipe2(err_pipe, O_CLOEXEC)) {
    out_failure(s.id, "pipe", errno);
    close(out_pipe[0]);
    close(out_pipe[1]);
    free(table);
    return;
  }
  s.out_w = out_pipe[1];
  s.err_w = err_pipe[1];
  s.procs = -1;
  s.procs_path = 0;
  struct cgroup *cg = cg_length ? cgroup_of(body + cg_at, cg_length) : 0;
  struct clone_args_v2 args;
  memset(&args, 0, sizeof args);
  args.flags = CLONE_VM | CLONE_VFORK;
  args.exit_signal = SIGCHLD;
  args.stack = (uint64_t)(uintptr_t)child_stack;
  args.stack_size = STACK_BYTES;
  long pid = -1;
  if (cg && cg->dir >= 0 && cg->failures < 2) {
    /* In its cgroup from its first instruction: nothing has to move it (a migration takes the
     * kernel's cgroup lock). */
    args.flags |= CLONE_INTO_CGROUP_;
    args.cgroup = cg->dir;
    pid = iris_clone3(&args, sizeof args, child, &s);
    if (pid < 0) {
      /* Tried again with fresh descriptors at the next task; failing twice in a row says that
       * this path is not for clone3. */
      cg->failures++;
      cgroup_open(cg);
    } else cg->failures = 0;
    args.flags &= ~CLONE_INTO_CGROUP_;
    args.cgroup = 0;
  }
  if (pid < 0) {
    if (cg) {
      s.procs = cg->procs;
      s.procs_path = cg->procs_path;
    }
    pid = iris_clone3(&args, sizeof args, child, &s);
    if (pid < 0 && errno == ENOSYS) {
      /* No clone3 (Linux before 5.3). */
      pid = clone(child, child_stack + STACK_BYTES, CLONE_VM | CLONE_VFORK | SIGCHLD, &s);
    }
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  free(table);
  if (pid < 0) {
    out_failure(s.id, "fork", errno);
    close(out_pipe[0]);
    close(err_pipe[0]);
    return;
  }
  add_kid(pid, s.id);
  int fds[2] = {out_pipe[0], err_pipe[0]};
  for (int i = 0; i < 2; i++) {
    struct stream *st = stream_at(fds[i]);
    *st = (struct stream){s.id, i ? 'E' : 'O', pid, 0, 1};
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fds[i]};
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fds[i], &ev);
  }
  out_num(s.id, 'P', pid);
}

/* ---- failures the children wrote before they exited: "id stage errno" lines ---- */
static char status_in[65536];
static size_t status_len;

static int take_failure(uint32_t id, char *stage_errno, size_t cap) {
  ssize_t n;
  while (status_len < sizeof status_in &&
         (n = read(status_r, status_in + status_len, sizeof status_in - status_len)) > 0)
    status_len += n;
  size_t at = 0;
  while (at < status_len) {
    char *nl = memchr(status_in + at, '\n', status_len - at);
    if (!nl) break;
    char *line = status_in + at;
    size_t line_len = nl - line;
    char *space = memchr(line, ' ', line_len);
    if (space && strtoul(line, 0, 10) == id) {
      size_t l = line_len - (space + 1 - line);
      if (l >= cap) l = cap - 1;
      memcpy(stage_errno, space + 1, l);
      stage_errno[l] = 0;
      memmove(line, nl + 1, status_len - (nl + 1 - status_in));
      status_len -= line_len + 1;
      return (int)l;
    }
    at = nl + 1 - status_in;
  }
  return -1;
}

static void reap(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    struct kid *k = kid_of(pid);
    if (!k) continue;
    uint32_t id = k->id;
    *k = kids[--kid_count];
    char why[64];
    int l = take_failure(id, why, sizeof why);
    if (l >= 0) out(id, 'F', why, l);
    out_num(id, 'X', status);
  }
}

/* ---- requests: u32 length (big-endian), then S (binary), C or A (NUL-separated fields) ---- */
static char *in_buf;
static size_t in_len, in_cap;

static uint32_t be32(const char *p) {
  const unsigned char *u = (const unsigned char *)p;
  return (uint32_t)u[0] << 24 | u[1] << 16 | u[2] << 8 | u[3];
}

static void handle(const char *body, uint32_t length) {
  if (length == 0) return;
  if (body[0] == 'S') {
    spawn_one(body, length);
    return;
  }
  /* op \0 task id [\0 stream \0 bytes] */
  char fields[3][32] = {{0}};
  size_t f = 0, at = 0;
  const char *op = body;
  size_t op_len = strnlen(body, length);
  at = op_len + 1;
  while (at < length && f < 3) {
    size_t l = strnlen(body + at, length - at);
    size_t c = l < 31 ? l : 31;
    memcpy(fields[f], body + at, c);
    fields[f++][c] = 0;
    at += l + 1;
  }
  uint32_t id = strtoul(fields[0], 0, 10);
  if (op_len == 1 && op[0] == 'C') {
    for (size_t fd = 1; fd < stream_cap; fd++)
      if (streams[fd].type && streams[fd].id == id) close_stream(fd);
  } else if (op_len == 1 && op[0] == 'A') {
    long bytes = strtol(fields[2], 0, 10);
    for (size_t fd = 1; fd < stream_cap; fd++) {
      struct stream *s = &streams[fd];
      if (!s->type || s->id != id || s->type != fields[1][0]) continue;
      s->held -= bytes;
      if (!s->reading && s->held < WINDOW) {
        s->reading = 1;
        watch(fd, 1);
      }
    }
  }
}

int main(int argc, char **argv) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)) return 1;
  if (argc < 2 || getppid() != (pid_t)strtol(argv[1], 0, 10)) return 0;
  signal(SIGPIPE, SIG_IGN);
  me = getpid();
  if (syscall(SYS_capget, cap_header, cap_effective) == 0) {
    /* The permitted set made effective, for a child that changes its uid (as setpriv does): the
     * exec drops them all. */
    uint32_t permitted0 = cap_effective[1], permitted1 = cap_effective[4];
    uint32_t caps[6] = {permitted0, permitted0, 0, permitted1, permitted1, 0};
    memcpy(cap_effective, caps, sizeof caps);
    have_caps = 1;
  }
  null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
  int status_pipe[2];
  if (null_fd < 0 || pipe2(status_pipe, O_CLOEXEC)) return 1;
  status_r = status_pipe[0];
  status_w = status_pipe[1];
  fcntl(status_r, F_SETFL, O_NONBLOCK);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, 0);
  sig_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
  epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  if (sig_fd < 0 || epoll_fd < 0) return 1;
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = 0};
  epoll_ctl(epoll_fd, EPOLL_CTL_ADD, 0, &ev);
  ev.data.fd = sig_fd;
  epoll_ctl(epoll_fd, EPOLL_CTL_ADD, sig_fd, &ev);
  out_num(0, 'R', me);
  int open_in = 1;
  char buf[65536];
  struct epoll_event events[64];
  while (open_in || kid_count) {
    flush_out();
    int n = epoll_wait(epoll_fd, events, 64, open_in || kid_count ? 1000 : 0);
    if (n < 0 && errno != EINTR) return 1;
    int reaping = n == 0; /* a timed-out wait checks anyway */
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == sig_fd) {
        struct signalfd_siginfo info[16];
        while (read(sig_fd, info, sizeof info) > 0) {}
        reaping = 1;
      } else if (fd == 0) {
        if (in_len + sizeof buf > in_cap) {
          in_cap = in_len + sizeof buf;
          in_buf = realloc(in_buf, in_cap);
          if (!in_buf) return 1;
        }
        ssize_t got = read(0, in_buf + in_len, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
          open_in = 0;
          epoll_ctl(epoll_fd, EPOLL_CTL_DEL, 0, 0);
          for (size_t k = 0; k < kid_count; k++) kill(-kids[k].pid, SIGKILL);
          continue;
        }
        in_len += got;
        size_t at = 0;
        while (in_len - at >= 4) {
          uint32_t length = be32(in_buf + at);
          if (in_len - at - 4 < length) break;
          handle(in_buf + at + 4, length);
          at += 4 + length;
        }
        memmove(in_buf, in_buf + at, in_len - at);
        in_len -= at;
      } else {
        struct stream *s = stream_at(fd);
        if (!s->type) continue;
        ssize_t got = read(fd, buf, sizeof buf);
        if (got > 0) {
          out(s->id, s->type, buf, got);
          s->held += got;
          if (s->held >= WINDOW) {
            s->reading = 0;
            watch(fd, 0);
          }
        } else if (got == 0 || errno != EINTR) close_stream(fd);
      }
    }
    if (reaping) reap();
    if (!open_in)
      for (size_t k = 0; k < kid_count; k++) kill(-kids[k].pid, SIGKILL);
  }
  flush_out();
  return 0;
}
`;
