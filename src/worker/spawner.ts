/**
 * A long-lived spawner process per worker that starts tasks with one fork and one exec each (#20).
 *
 * The plain path starts a task as `setsid → sh -c (cgroup, ulimit) → setpriv → program`: four
 * execs, and Deno blocks the worker's event loop until the first. The spawner is a small Perl
 * script (perl-base is Essential on Debian and Ubuntu) kept running beside the worker: per task it
 * forks (straight into the task's cgroup with clone3 where it can), and the child does in order
 * what the wrappers did — setsid, join the cgroup (when not forked into it), lower the limits,
 * drop to the task user (no supplementary groups, no new privileges), parent-death signal — then
 * chdir, stdin /dev/null, stdout/stderr to pipes, and execs the program with exactly the given
 * environment. The worker has the pid as soon as the spawner forked; a failed chdir or exec
 * comes back as an errno with the exit, and is reported as Deno's spawn would have thrown it.
 * The spawner keeps the pipes' read ends and forwards their output, and each child's wait status,
 * over its stdout in small framed records (at most WINDOW bytes in flight per stream: behind
 * that the task's pipe fills, as when the worker read it directly); {@linkcode TaskSpawner}
 * demultiplexes them into per-task streams. The spawner dies with the worker (PR_SET_PDEATHSIG),
 * and its tasks with it.
 *
 * A task's CPU is mostly that fork and the exec, and the pages either side writes in between: the
 * spawner writes few (a spawn request read in place and laid out for the child's syscalls, bare
 * pipe descriptors, no perl data made per task, one status pipe for all children, SIGCHLD through
 * a signalfd); see SCRIPT for what each saved. Where the host has a C compiler, the worker runs
 * the same protocol's native twin first (spawner_native.ts), which starts each task without
 * copying its own memory: Perl remains where it does not compile or start.
 * @module
 */
import { findUtil } from "./process_tree.ts";
import type { NativeSpawner } from "./spawner_native.ts";

/** What a task runner needs of a started process: a Deno.ChildProcess fits too. */
export interface TaskChild {
  readonly pid: number;
  readonly stdout: ReadableStream<Uint8Array>;
  readonly stderr: ReadableStream<Uint8Array>;
  /**
   * `lost`: the process was killed because the spawner died, with the reason; `spawnError`: its
   * program never ran (as Deno.Command.spawn would have thrown it).
   */
  readonly status: Promise<
    { code: number; signal: Deno.Signal | null; lost?: string; spawnError?: Error }
  >;
  kill(signal: "SIGTERM" | "SIGKILL"): void;
  /**
   * Where there is one: hands every output chunk to `sink` as it comes (null once that stream
   * ended) instead of through `stdout` and `stderr`, which must then not be read; returns what
   * stops it (as cancelling both streams would). Two streams' reads cost a quiet task more than
   * the rest of its output path (#20).
   */
  listen?(sink: OutputSink): () => void;
}

/** Receives a task's output chunks; null: that stream ended. */
export type OutputSink = (stream: "stdout" | "stderr", chunk: Uint8Array | null) => void;

/** One task to start: process_tree.ts's SpawnOptions, resolved (see spawnerRequest there). */
export interface SpawnRequest {
  /** The absolute path of the program; it is also the program's argv[0]. */
  readonly program: string;
  readonly args: readonly string[];
  readonly cwd: string;
  /** The complete environment. */
  readonly env: Record<string, string>;
  readonly user?: { readonly uid: number; readonly gid: number };
  /** Limits to set (soft and hard), already lowered to what the worker may set. */
  readonly limits: {
    readonly processes?: number;
    readonly openFiles?: number;
    readonly fileBytes?: number;
  };
  readonly cgroup?: string;
}

/**
 * Syscall numbers the script needs, per architecture (asm-generic on aarch64), in the order of
 * its first line.
 */
const SYSCALLS: Record<string, readonly number[]> = {
  // prctl, setrlimit, setgroups, setresgid, setresuid, setsid, rt_sigaction, rt_sigprocmask,
  // getppid, chdir, dup3, execve, exit_group, write, clone3, close_range, capget, capset, pipe2,
  // read, close, signalfd4
  "x86_64": [
    157,
    160,
    116,
    119,
    117,
    112,
    13,
    14,
    110,
    80,
    292,
    59,
    231,
    1,
    435,
    436,
    125,
    126,
    293,
    0,
    3,
    289,
  ],
  aarch64: [
    167,
    164,
    159,
    149,
    147,
    157,
    134,
    135,
    173,
    49,
    24,
    221,
    94,
    64,
    435,
    436,
    90,
    91,
    59,
    63,
    57,
    74,
  ],
};

/**
 * The env var that turns the spawner off ("0": tasks then start through the wrapper chain) or
 * keeps it to Perl ("perl": no native spawner, see spawner_native.ts).
 */
export const SPAWNER_ENV = "IRIS_TASK_SPAWNER";

/** IRIS_TASK_SPAWNER's value, "" when unset or not readable. */
function spawnerSetting(): string {
  try {
    if (Deno.permissions.querySync({ name: "env", variable: SPAWNER_ENV }).state !== "granted") {
      return "";
    }
    return Deno.env.get(SPAWNER_ENV) ?? "";
  } catch {
    return "";
  }
}

/**
 * The spawner. Requests on stdin: u32 length + body; S spawn (binary, laid out for the syscalls:
 * see spawnRequestFrame), C close a task's streams and A bytes of a stream taken (NUL-separated
 * fields; at most WINDOW bytes of a stream are in flight, the task's pipe fills behind them as if
 * the worker read it directly). Records on stdout: u32 id, one type byte, u32 length, payload.
 * Types: R ready (pid), P started (pid), F failed ("stage errno"), O/E stdout/stderr bytes, o/e
 * that stream closed, X exited (wait status).
 *
 * What a task costs is mostly the fork of this process and what its child does before the exec
 * (#20): every page either side writes after the fork is copied (a fault each, while the child
 * still shares it), and the fork and the exec's teardown of the copy cost in proportion to what is
 * mapped. So the script loads no module (POSIX alone doubles its memory), and between two forks
 * little is written:
 * - a spawn request is read in place: the child passes pointers into it (limits, cwd, argv and
 *   environment strings) and the parent only unpacks a few numbers and builds one pointer table;
 * - a task's pipes are bare pipe2 descriptors, its state sits in arrays indexed by descriptor and
 *   one number per child (no perl handle, hash or array made per task), one status pipe serves
 *   every child (a failed step writes "id stage errno" there before its exit), and SIGCHLD comes
 *   through a signalfd (no handler frame on the stack; the perl handler where there is none);
 * - the child calls clone3 inline (it returns from no sub) and runs nothing but syscall ops up to
 *   execve(2), on strings made the parent's own beforehand (syscall copies a copy-on-write
 *   string). Records are written once per turn of the loop;
 * - the spawns of one read (a worker sends a RunTasks batch at once) are forked back to back: their
 *   pipes and pointers are made first, the fork loop writes a few pages per fork (the child reads
 *   its request's fields in place), and they are recorded after the last fork.
 * Per /bin/true this took the spawner from 65 faults to 36 and its children from 99 to 74 (48 of
 * them /bin/true's own); forking a batch back to back, from 39 faults to 19 and 0.21 ms of CPU to
 * 0.17 in bench.ts's tput (a lone spawn: 37 faults to 45). Measured and left out: CLONE_VFORK (no less CPU, the loop waits),
 * MADV_DONTFORK on libm and libcrypt (no gain), reaping on a stream's end (more turns, not fewer).
 */
const SCRIPT = String.raw`
use strict;
my ($PRCTL, $SETRLIMIT, $SETGROUPS, $SETRESGID, $SETRESUID, $SETSID, $SIGACTION, $SIGMASK,
  $GETPPID, $CHDIR, $DUP3, $EXECVE, $EXIT, $WRITE, $CLONE3, $CLOSE_RANGE, $CAPGET, $CAPSET,
  $PIPE2, $READ, $CLOSE, $SIGNALFD, $PARENT) = map { $_ + 0 } @ARGV;
my ($EINTR, $ENOEXEC, $WNOHANG, $O_NONBLOCK, $O_CLOEXEC) = (4, 8, 1, 0x800, 0x80000);
syscall($PRCTL, 1, 9, 0, 0, 0) == 0 or die "prctl: $!";
exit 0 if getppid() != $PARENT;
$SIG{PIPE} = 'IGNORE';
my $ME = $$;
my $WINDOW = 65536;
# sigaction(SIG_DFL) and an empty signal set, for the child.
my ($DFL, $EMPTY, $ZERO) = ("\0" x 32, "\0" x 8, '0');
# This process's capabilities with the permitted set made effective (capset data, v3), for a
# child that changed its uid: as setpriv(1) does, it execs with them (so a program under a
# root-only directory still starts, as with the wrapper chain), and the exec drops them all (a
# non-root uid, no file capabilities, no ambient set).
my $CAPHDR = pack('Li', 0x20080522, 0);
my $CAPS = "\0" x 24;
my @caps = syscall($CAPGET, $CAPHDR, $CAPS) == 0 ? unpack('L6', $CAPS) : ();
my $CAPS_EFFECTIVE = @caps ? pack('L6', $caps[1], $caps[1], 0, $caps[4], $caps[4], 0) : '';
# syscall() makes each string it passes a buffer of its own (a copy-on-write string is copied):
# done here once, not in every child.
syscall($GETPPID, $DFL, $EMPTY, $ZERO, $CAPHDR, $CAPS_EFFECTIVE);
# Kept open (close-on-exec, as every descriptor perl opens above 2): the child only dup3s or
# writes them. A child that fails before its exec writes "id stage errno" to the status pipe
# (one write, atomic) and exits; read when it is reaped.
open(my $null, '<', '/dev/null') or die "/dev/null: $!";
my $NULL = fileno $null;
pipe(my $status_r, my $status_w) or die "pipe: $!";
fcntl($status_r, 4, $O_NONBLOCK) or die "fcntl: $!";
my $STATUS = fileno $status_w;
# SIGCHLD through a signalfd: no handler runs on this process's stack, and select sees it
# (no window between a check and the wait). A perl handler and timed waits where there is none.
my $CHLD_SET = pack('Q', 1 << 16);
my $sigfd = syscall($SIGMASK, 0, $CHLD_SET, 0, 8) == 0
  ? syscall($SIGNALFD, -1, $CHLD_SET, 8, $O_NONBLOCK | $O_CLOEXEC) : -1;
syscall($SIGMASK, 1, $CHLD_SET, 0, 8) if $sigfd < 0;
my $chld = 0;
$SIG{CHLD} = sub { $chld = 1 } if $sigfd < 0;
# Buffers sized once and reused: the syscalls write into them. The 64 KiB one grown in place
# (\0 x 65536 would leave its 16 pages' temporary copy in the heap, which every fork copies).
my ($PIPE, $BUF, $SIGINFO) = ("\0" x 8, "", "\0" x 1280);
vec($BUF, 65535, 8) = 0;
# Running children: pid => task id * 4 + how many of its streams are open (0-2).
my %kids;
# Children reaped but not reported yet (pid, wait status, ...), and failures read for them.
my (@reaped, %failed);
my $status_in = '';
# Children with both streams closed, not reaped yet (the timed waits without a signalfd).
my $drained = 0;
# The task streams' read ends, by descriptor: task id, type ('O'/'E'; '' when none), pid,
# bytes in flight. $rin holds the descriptors to wait on.
my (@stream_id, @stream_type, @stream_pid, @stream_held);
my $rin = '';
my $pending = '';
# Requests as read, the first one at the start.
my $in = '';
my $SH = '/bin/sh';
sub out {
  my ($id, $type, $data) = @_;
  $pending .= pack('NaN', $id, $type, length $data);
  $pending .= $data;
}
sub flush {
  while (length $pending) {
    my $n = syswrite(STDOUT, $pending);
    if (!defined $n) { next if $! == $EINTR; syscall($EXIT, 1); }
    substr($pending, 0, $n, '');
  }
}
# In the child: reports the failed step's errno on the status pipe and exits.
sub fail {
  my ($id, $stage) = @_;
  my $why = "$id $stage " . ($! + 0) . "\n";
  syscall($WRITE, $STATUS, $why, length $why);
  syscall($EXIT, 127);
}
# In the child: a limit (the struct rlimit at address $rlimit) could not be set; says so on the
# task's stderr and exits.
sub limit_failed {
  my ($stderr, $what, $rlimit) = @_;
  my $why = "iris: cannot set the task's $what limit to " . unpack('Q<', unpack('P8', pack('J', $rlimit))) . ": $!\n";
  syscall($WRITE, $stderr, $why, length $why);
  syscall($EXIT, 126);
}
# A task cgroup's directory (for clone3) and cgroup.procs (for the fallback), kept open. A cgroup
# removed and made again under the same path makes clone3 fail on the old one: reopened then.
my %cgroups;
my %clone3_failed;
sub cgroup {
  my ($cg) = @_;
  return $cgroups{$cg} if $cgroups{$cg};
  my $c = { dir => -1, procs => -1 };
  $c->{dir} = fileno $c->{dir_fh} if sysopen($c->{dir_fh}, $cg, 0);
  $c->{procs} = fileno $c->{procs_fh} if open($c->{procs_fh}, '>', "$cg/cgroup.procs");
  # struct clone_args: flags = CLONE_INTO_CGROUP, exit_signal = SIGCHLD, cgroup = the fd.
  $c->{args} = pack('Q11', 0x200000000, 0, 0, 0, 17, 0, 0, 0, 0, 0, $c->{dir});
  syscall($GETPPID, $c->{args});
  my $failures = $clone3_failed{$cg} // 0;
  $c->{clone3} = $c->{dir} >= 0 && $failures < 2;
  # A clone3 into it that works resets the count.
  $c->{retry} = $failures > 0;
  return $cgroups{$cg} = $c;
}
# clone3 failed for cgroup $cg: tried again with a fresh descriptor, which failing too (twice in
# a row) says that this path is not for clone3.
sub clone3_failed {
  my ($cg) = @_;
  $clone3_failed{$cg}++;
  delete $cgroups{$cg};
  cgroup($cg);
}
# Spawn requests read and not forked yet: their offsets in $in. All the requests of a read are
# forked together, back to back (see spawn_all).
my @todo;
# Per request of a batch (index k), what the fork loop and the child use: task id, flags, uid,
# gid, the body's address, cwd, program, argv and environment pointers, the pointer table, cgroup, the
# pipes' read and write ends, pid (undef: the fork failed), whether clone3 put it in its cgroup.
my (@b_id, @b_flags, @b_uid, @b_gid, @b_base, @b_cwd, @b_prog, @b_argvp, @b_envp, @b_table, @b_cg);
my (@b_or, @b_o, @b_er, @b_e, @b_pid, @b_joined);
# Starts the tasks whose requests (see SpawnerProcess.spawn) are at @todo in $in. A request is
# laid out for the syscalls: the child passes pointers into it (the limits, cwd, the argv and
# environment strings) and runs no perl but syscall ops; the parent unpacks a few numbers and
# makes one pointer table. Every page the parent writes after a fork is a copy-on-write fault, so
# the batch is prepared first (pipes, pointers), then forked in a loop that writes a few pages per
# fork, then recorded (#20). $in must not move or change before the forks (a child sees it as it
# was at its fork): it is cut after this returns.
sub spawn_all {
  my $n = 0;
  for my $at (@todo) {
    my ($id, $flags, $uid, $gid, $argc, $cwd, $cg_at, $cg_length) = unpack("x$at x8 V8", $in);
    my $base = unpack('J', pack('p', $in)) + $at + 4;
    # argv, a null, the environment, a null: the request's offsets made pointers.
    my $table = pack('Q*', map { $_ && $_ + $base } unpack("x$at x96 V/Q<", $in));
    # Bare descriptors (close-on-exec), no perl handles: nothing per task stays allocated.
    if (syscall($PIPE2, $PIPE, $O_CLOEXEC) < 0) { out($id, 'F', "pipe " . ($! + 0)); next; }
    my ($or, $o) = unpack('i2', $PIPE);
    if (syscall($PIPE2, $PIPE, $O_CLOEXEC) < 0) {
      out($id, 'F', "pipe " . ($! + 0));
      syscall($CLOSE, $or);
      syscall($CLOSE, $o);
      next;
    }
    my ($er, $e) = unpack('i2', $PIPE);
    ($b_id[$n], $b_flags[$n], $b_uid[$n], $b_gid[$n], $b_base[$n], $b_cwd[$n]) =
      ($id, $flags, $uid, $gid, $base, $cwd + $base);
    # The pointers are into the table as kept (the array's copy), which lives until the next batch.
    $b_table[$n] = $table;
    my $argvp = unpack('J', pack('p', $b_table[$n]));
    ($b_prog[$n], $b_argvp[$n], $b_envp[$n]) = (unpack('J', $table), $argvp, $argvp + 8 * ($argc + 1));
    $b_cg[$n] = $cg_length ? substr($in, $at + 4 + $cg_at, $cg_length) : '';
    ($b_or[$n], $b_o[$n], $b_er[$n], $b_e[$n]) = ($or, $o, $er, $e);
    $n++;
  }
  @todo = ();
  # Where the task has a cgroup, clone3(2) with CLONE_INTO_CGROUP: the child is in its cgroup from
  # its first instruction and nothing has to move it (a migration takes the kernel's cgroup
  # lock). Seen from perl both are a fork, called here so that the child runs on with no return
  # from a sub. fork() when clone3 fails (an old kernel, a seccomp filter, not a cgroup2
  # directory).
  for (my $k = 0; $k < $n; $k++) {
    my $cg = $b_cg[$k];
    my $c = $cg eq '' ? undef : $cgroups{$cg} || cgroup($cg);
    my $pid = $c && $c->{clone3} ? syscall($CLONE3, $c->{args}, 88) : -1;
    my $joined = $pid >= 0;
    if (!$joined) {
      clone3_failed($cg) if $c && $c->{clone3};
      $pid = fork();
    }
    if (defined $pid && $pid == 0) {
      # What the child reads is not copied: a write is a copy-on-write fault.
      syscall($SIGACTION, 13, $DFL, 0, 8);
      syscall($SIGMASK, 2, $EMPTY, 0, 8);
      syscall($SETSID) >= 0 or fail($b_id[$k], 'setsid');
      # Not joined is what the old open did too: the worker's other sweeps still find the task.
      if ($cg ne '' && !$joined) {
        my $c = cgroup($cg);
        if (($c->{procs} < 0 || syscall($WRITE, $c->{procs}, $ZERO, 1) != 1) && open(my $f, '>', "$cg/cgroup.procs")) {
          syswrite($f, '0');
        }
      }
      $b_flags[$k] & 1 and syscall($SETRLIMIT, 6, $b_base[$k] + 40)
        and limit_failed($b_e[$k], 'processes', $b_base[$k] + 40);
      $b_flags[$k] & 2 and syscall($SETRLIMIT, 7, $b_base[$k] + 56)
        and limit_failed($b_e[$k], 'open files', $b_base[$k] + 56);
      $b_flags[$k] & 4 and syscall($SETRLIMIT, 1, $b_base[$k] + 72)
        and limit_failed($b_e[$k], 'file size', $b_base[$k] + 72);
      if ($b_flags[$k] & 8) {
        syscall($SETGROUPS, 0, 0) == 0 or fail($b_id[$k], 'setgroups');
        syscall($SETRESGID, $b_gid[$k], $b_gid[$k], $b_gid[$k]) == 0 or fail($b_id[$k], 'setgid');
        # PR_SET_KEEPCAPS: the uid change keeps the permitted set (the exec clears the flag).
        syscall($PRCTL, 8, 1, 0, 0, 0) if $CAPS_EFFECTIVE ne '';
        syscall($SETRESUID, $b_uid[$k], $b_uid[$k], $b_uid[$k]) == 0 or fail($b_id[$k], 'setuid');
        syscall($CAPSET, $CAPHDR, $CAPS_EFFECTIVE) if $CAPS_EFFECTIVE ne '';
        syscall($PRCTL, 38, 1, 0, 0, 0) == 0 or fail($b_id[$k], 'no_new_privs');
      }
      # After the uid change, which clears it.
      syscall($PRCTL, 1, 9, 0, 0, 0) == 0 or fail($b_id[$k], 'pdeathsig');
      syscall($EXIT, 127) if syscall($GETPPID) != $ME;
      syscall($CHDIR, $b_cwd[$k]) == 0 or fail($b_id[$k], 'chdir');
      syscall($DUP3, $NULL, 0, 0) >= 0 or fail($b_id[$k], 'stdin');
      syscall($DUP3, $b_o[$k], 1, 0) >= 0 or fail($b_id[$k], 'stdout');
      syscall($DUP3, $b_e[$k], 2, 0) >= 0 or fail($b_id[$k], 'stderr');
      # Nothing but 0-2 reaches the task: descriptors the worker inherited without close-on-exec
      # (from its own parent) are closed by the exec (CLOSE_RANGE_CLOEXEC; Linux 5.11+, else as
      # before). The status pipe stays open until then.
      syscall($CLOSE_RANGE, 3, 0xFFFFFFFF, 4);
      syscall($EXECVE, $b_prog[$k], $b_argvp[$k], $b_envp[$k]);
      if ($! == $ENOEXEC) {
        # No #! line: run it with the shell, as execvp(3) (Deno's spawn, the wrapper chain) does:
        # sh, then argv (which ends at the table's first null).
        my $sh = pack('p', $SH) . $b_table[$k];
        syscall($EXECVE, $SH, $sh, $b_envp[$k]);
        $! = $ENOEXEC;
      }
      fail($b_id[$k], 'exec');
    }
    $b_pid[$k] = $pid;
    $b_joined[$k] = $joined;
  }
  # Read where they are, as few lexicals written as can be: a page written is a fault after all.
  for (my $k = 0; $k < $n; $k++) {
    my $pid = $b_pid[$k];
    if (!defined $pid) {
      out($b_id[$k], 'F', "fork " . ($! + 0));
      syscall($CLOSE, $_) for $b_or[$k], $b_o[$k], $b_er[$k], $b_e[$k];
      next;
    }
    if ($b_joined[$k] && $cgroups{$b_cg[$k]}{retry}) {
      $clone3_failed{$b_cg[$k]} = 0;
      $cgroups{$b_cg[$k]}{retry} = 0;
    }
    syscall($CLOSE, $b_o[$k]);
    syscall($CLOSE, $b_e[$k]);
    # Answered at once: whether the exec worked is known when the child is reaped (a failure is
    # written to the status pipe before the exit), so spawns do not wait here.
    $kids{$pid} = $b_id[$k] * 4 + 2;
    @stream_id[$b_or[$k], $b_er[$k]] = ($b_id[$k], $b_id[$k]);
    @stream_type[$b_or[$k], $b_er[$k]] = ('O', 'E');
    @stream_pid[$b_or[$k], $b_er[$k]] = ($pid, $pid);
    @stream_held[$b_or[$k], $b_er[$k]] = (0, 0);
    vec($rin, $b_or[$k], 1) = 1;
    vec($rin, $b_er[$k], 1) = 1;
    out($b_id[$k], 'P', $pid);
  }
}
sub close_stream {
  my ($fd) = @_;
  my $type = $stream_type[$fd] or return;
  $stream_type[$fd] = '';
  vec($rin, $fd, 1) = 0;
  syscall($CLOSE, $fd);
  out($stream_id[$fd], $type eq 'O' ? 'o' : 'e', '');
  my $pid = $stream_pid[$fd];
  $drained++ if exists $kids{$pid} && (--$kids{$pid} & 3) == 0;
}
sub reap {
  $chld = 0;
  while ((my $pid = waitpid(-1, $WNOHANG)) > 0) { push @reaped, $pid, $?; }
  return unless @reaped;
  # What the children reaped wrote before they exited is in the pipe by now.
  while (sysread($status_r, $status_in, 4096, length $status_in)) {}
  $failed{$1} = $2 while $status_in =~ s/^(\d+) (\S+ \d+)\n//;
  while (@reaped) {
    my $pid = shift @reaped;
    my $status = shift @reaped;
    my $kid = delete $kids{$pid} // next;
    $drained-- if ($kid & 3) == 0;
    my $id = $kid >> 2;
    my $why = delete $failed{$id};
    out($id, 'F', $why) if defined $why;
    out($id, 'X', $status);
  }
}
out(0, 'R', $$);
my $open = 1;
my $timedout = 0;
vec($rin, 0, 1) = 1;
vec($rin, $sigfd, 1) = 1 if $sigfd >= 0;
my ($rout, $ready) = ('', '');
while ($open || %kids) {
  # SIGCHLD says when; a timed-out wait checks anyway.
  reap() if $chld || $timedout;
  # The last task just reaped after stdin closed: nothing is left to wait for (select would wait
  # forever on no descriptor).
  last unless $open || %kids;
  if (!$open) { vec($rin, 0, 1) = 0; kill 'KILL', -$_ for keys %kids; }
  flush();
  # A stream the worker is behind on waits (as a pipe would): what it holds stays bounded.
  my $wait = !%kids ? undef : $sigfd >= 0 ? 1 : $drained ? 0.005 : 0.1;
  my $n = select($rout = $rin, undef, undef, $wait);
  $timedout = defined $n && $n == 0;
  next if $n <= 0;
  if ($sigfd >= 0 && vec($rout, $sigfd, 1)) {
    1 while syscall($READ, $sigfd, $SIGINFO, 1280) > 0;
    $chld = 1;
  }
  $ready = unpack('b*', $rout);
  my $fd = 0;
  while (($fd = index($ready, '1', $fd + 1)) > 0) {
    next unless $stream_type[$fd];
    my $got = syscall($READ, $fd, $BUF, 65536);
    if ($got > 0) {
      $pending .= pack('NaN', $stream_id[$fd], $stream_type[$fd], $got);
      $pending .= substr($BUF, 0, $got);
      vec($rin, $fd, 1) = 0 if ($stream_held[$fd] += $got) >= $WINDOW;
    }
    elsif ($got == 0 || $! != $EINTR) { close_stream($fd); }
  }
  next unless $open && vec($rout, 0, 1);
  my $got = sysread(STDIN, $in, 65536, length $in);
  next if !defined $got && $! == $EINTR;
  if (!$got) { $open = 0; next; }
  # Requests are parsed where they are; the spawns among them are forked together, then what
  # was parsed is cut from $in (a child points into it as it was at its fork).
  my $at = 0;
  while (length($in) - $at >= 4) {
    my $len = unpack("x$at N", $in);
    last if length($in) - $at < 4 + $len;
    if (vec($in, $at + 4, 8) == 83) {
      # S: a spawn, read in place.
      push @todo, $at;
      $at += 4 + $len;
      next;
    }
    # C and A are about tasks started before (the worker sends them after their P record).
    my @f = split /\0/, substr($in, $at + 4, $len), -1;
    $at += 4 + $len;
    my $op = shift @f;
    if ($op eq 'C') {
      for my $fd (1 .. $#stream_type) { close_stream($fd) if $stream_type[$fd] && $stream_id[$fd] == $f[0]; }
    }
    elsif ($op eq 'A') {
      for my $fd (1 .. $#stream_type) {
        next unless $stream_type[$fd] eq $f[1] && $stream_id[$fd] == $f[0];
        vec($rin, $fd, 1) = 1 if ($stream_held[$fd] -= $f[2]) < $WINDOW;
      }
    }
  }
  spawn_all() if @todo;
  substr($in, 0, $at, '') if $at;
}
flush();
`;

/** Where the spawner finds its script, and what runs it. */
const SCRIPT_ENV = "IRIS_SPAWNER_SCRIPT";
const LOADER = `$0 = "iris-task-spawner"; eval delete $ENV{${SCRIPT_ENV}}; die $@ if $@;`;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const HEADER_BYTES = 9;
/** How many times the spawner may die before the worker stops using it. */
const MAX_RESTARTS = 5;

/** A failed step's errno as the error Deno.Command.spawn throws (describeSpawnError reads it). */
function spawnError(program: string, stage: string, errno: number): Error {
  const ENOENT = 2, EACCES = 13, ENOTDIR = 20, EPERM = 1, E2BIG = 7;
  if (stage === "chdir" && (errno === ENOENT || errno === ENOTDIR)) {
    return new Deno.errors.NotFound(`Failed to spawn '${program}': No such cwd`);
  }
  if (stage === "exec" && (errno === ENOENT || errno === ENOTDIR)) {
    return new Deno.errors.NotFound(`Failed to spawn '${program}': No such file or directory`);
  }
  if (errno === EACCES || errno === EPERM) {
    return new Deno.errors.PermissionDenied(
      `Failed to spawn '${program}': ${stage}: errno ${errno}`,
    );
  }
  if (stage === "exec" && errno === E2BIG) {
    // An argv or environment past the kernel's limits (ARG_MAX, 128 KiB per string).
    return new Error(`Failed to spawn '${program}': Argument list too long (os error ${errno})`);
  }
  return new Error(`Failed to spawn '${program}': ${stage} failed (errno ${errno})`);
}

function concat(chunks: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/** Bytes of a stream taken by its reader before they are acknowledged to the spawner. */
const ACK_BYTES = 16 * 1024;

/**
 * One output stream of a spawned task: chunks wait here until read (the stream pulls them one at
 * a time), and what was read is acknowledged so the spawner reads the pipe on.
 */
class Feed {
  #stream?: ReadableStream<Uint8Array>;
  readonly #chunks: Uint8Array[] = [];
  readonly #ack: (bytes: number) => void;
  readonly #onCancel: () => void;
  #ended = false;
  #wake?: () => void;
  #unacked = 0;
  /** Set by listen(): chunks go straight there, not through `stream`. */
  #sink?: (chunk: Uint8Array | null) => void;

  constructor(ack: (bytes: number) => void, onCancel: () => void) {
    this.#ack = ack;
    this.#onCancel = onCancel;
  }

  /** The chunks as a stream; made when first asked for (a listened-to feed never is). */
  get stream(): ReadableStream<Uint8Array> {
    return this.#stream ??= new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        while (this.#chunks.length === 0 && !this.#ended) {
          await new Promise<void>((resolve) => this.#wake = resolve);
        }
        // Everything queued in one chunk: the reader gets one chunk per read of the spawner's
        // output, as it got one per read of a pipe.
        const chunk = this.#chunks.length > 1 ? concat(this.#chunks) : this.#chunks[0];
        this.#chunks.length = 0;
        if (!chunk) return controller.close();
        controller.enqueue(chunk);
        this.#taken(chunk.length);
      },
      cancel: () => this.cancel(),
    }, { highWaterMark: 0 });
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Sends what was queued so far, then every chunk as it comes, to `sink` (see TaskChild). */
  listen(sink: (chunk: Uint8Array | null) => void): void {
    this.#sink = sink;
    for (const chunk of this.#chunks.splice(0)) {
      sink(chunk);
      this.#taken(chunk.length);
    }
    if (this.#ended) sink(null);
  }

  push(bytes: Uint8Array): void {
    if (this.#ended) return;
    if (this.#sink) {
      this.#sink(bytes);
      this.#taken(bytes.length);
      return;
    }
    this.#chunks.push(bytes);
    this.#wake?.();
  }

  end(): void {
    if (!this.#ended) this.#sink?.(null);
    this.#ended = true;
    this.#wake?.();
  }

  cancel(): void {
    this.end();
    this.#chunks.length = 0;
    this.#onCancel();
  }

  /** The reader took `bytes`: acknowledged in batches, so the spawner reads the pipe on. */
  #taken(bytes: number): void {
    this.#unacked += bytes;
    if (this.#unacked >= ACK_BYTES) {
      this.#ack(this.#unacked);
      this.#unacked = 0;
    }
  }
}

type Status = { code: number; signal: Deno.Signal | null; lost?: string; spawnError?: Error };

/** A task started by the spawner, fed by its records. */
class SpawnedTask implements TaskChild {
  pid = 0;
  program = "";
  readonly feeds: Record<"O" | "E", Feed>;
  readonly status: Promise<Status>;
  settle!: (status: Status) => void;
  exited = false;
  /** Why its program did not start, when it did not. */
  failure?: Error;

  constructor(send: (fields: string[]) => void) {
    let cancelled = 0;
    const feed = (key: "O" | "E") =>
      new Feed((bytes) => send(["A", key, String(bytes)]), () => {
        if (++cancelled === 2) send(["C"]);
      });
    this.feeds = { O: feed("O"), E: feed("E") };
    this.status = new Promise((resolve) => this.settle = resolve);
  }

  get stdout(): ReadableStream<Uint8Array> {
    return this.feeds.O.stream;
  }

  get stderr(): ReadableStream<Uint8Array> {
    return this.feeds.E.stream;
  }

  /** Exited, and both streams closed: no record will come for it any more. */
  get finished(): boolean {
    return this.exited && this.feeds.O.ended && this.feeds.E.ended;
  }

  kill(signal: "SIGTERM" | "SIGKILL"): void {
    if (!this.exited) Deno.kill(this.pid, signal);
  }

  listen(sink: OutputSink): () => void {
    this.feeds.O.listen((chunk) => sink("stdout", chunk));
    this.feeds.E.listen((chunk) => sink("stderr", chunk));
    // As a reader's cancel: a stream already ended is left alone.
    return () => {
      for (const feed of [this.feeds.O, this.feeds.E]) if (!feed.ended) feed.cancel();
    };
  }
}

/** Signal names by number (Linux), for wait statuses. */
const SIGNALS: Record<number, Deno.Signal> = {
  1: "SIGHUP",
  2: "SIGINT",
  3: "SIGQUIT",
  4: "SIGILL",
  5: "SIGTRAP",
  6: "SIGABRT",
  7: "SIGBUS",
  8: "SIGFPE",
  9: "SIGKILL",
  10: "SIGUSR1",
  11: "SIGSEGV",
  12: "SIGUSR2",
  13: "SIGPIPE",
  14: "SIGALRM",
  15: "SIGTERM",
  24: "SIGXCPU",
  25: "SIGXFSZ",
  26: "SIGVTALRM",
  27: "SIGPROF",
  31: "SIGSYS",
};

/** A wait(2) status as Deno's CommandStatus reports it: 128 + n after signal n. */
export function decodeWaitStatus(status: number): { code: number; signal: Deno.Signal | null } {
  const signal = status & 0x7f;
  if (signal === 0) return { code: (status >> 8) & 0xff, signal: null };
  return { code: 128 + signal, signal: SIGNALS[signal] ?? null };
}

/** Where a spawn request's parts are (byte offsets in its body; see the script's spawn). */
const SPAWN = { limits: 40, tableLength: 92, table: 96 } as const;

/**
 * A spawn request (u32 length, big-endian, then the body), its body laid out for the syscalls the spawner's child makes: "S", then u32 id,
 * flags (1 processes, 2 open files, 4 file size: set that limit; 8: change to uid and gid), uid,
 * gid, argc, the cwd's offset, the cgroup's offset and length; at 40 three struct rlimit; at 92
 * the number of table entries; at 96 the table (u64 each): the offsets of argv's strings, 0, of
 * the environment's, 0; then the strings, each ending in a NUL. All little-endian (the spawner's
 * architectures are). Undefined when a string holds a NUL (no exec could pass it).
 */
function spawnRequestFrame(id: number, request: SpawnRequest): Uint8Array | undefined {
  let text = `${request.cwd}\0${request.cgroup ?? ""}\0${request.program}\0`;
  for (const arg of request.args) text += `${arg}\0`;
  let count = 3 + request.args.length;
  for (const key in request.env) {
    text += `${key}=${request.env[key]}\0`;
    count++;
  }
  const strings = encoder.encode(text);
  const ends: number[] = [];
  for (let at = strings.indexOf(0); at >= 0; at = strings.indexOf(0, at + 1)) ends.push(at);
  // A NUL more than the strings' own ends: one was inside a string.
  if (ends.length !== count) return undefined;
  // cwd and cgroup are not in the table; its two nulls are.
  const stringsAt = SPAWN.table + 8 * ends.length;
  const frame = new Uint8Array(4 + stringsAt + strings.length);
  new DataView(frame.buffer).setUint32(0, stringsAt + strings.length);
  frame.set(strings, 4 + stringsAt);
  const view = new DataView(frame.buffer, 4);
  const argc = request.args.length + 1;
  // The table: the offsets of argv's strings, a null, of the environment's (from the third
  // string on), a null.
  for (let k = 0; k < ends.length - 2; k++) {
    view.setUint32(SPAWN.table + 8 * (k < argc ? k : k + 1), stringsAt + ends[k + 1]! + 1, true);
  }
  const { processes, openFiles, fileBytes } = request.limits;
  let flags = request.user ? 8 : 0;
  const limits = [processes, openFiles, fileBytes];
  for (let i = 0; i < 3; i++) {
    const value = limits[i];
    if (value === undefined) continue;
    flags |= 1 << i;
    // Soft and hard; RLIM_INFINITY where the value is no finite count.
    const finite = Number.isFinite(value) && value >= 0;
    const low = finite ? Math.floor(value) % 2 ** 32 : 0xffffffff;
    const high = finite ? Math.floor(value / 2 ** 32) : 0xffffffff;
    for (let at = SPAWN.limits + 16 * i; at < SPAWN.limits + 16 * i + 16; at += 8) {
      view.setUint32(at, low, true);
      view.setUint32(at + 4, high, true);
    }
  }
  view.setUint8(0, 83); // "S"
  view.setUint32(4, id, true);
  view.setUint32(8, flags, true);
  view.setUint32(12, request.user?.uid ?? 0, true);
  view.setUint32(16, request.user?.gid ?? 0, true);
  view.setUint32(20, argc, true);
  view.setUint32(24, stringsAt, true); // cwd, the first string
  view.setUint32(28, stringsAt + ends[0]! + 1, true);
  view.setUint32(32, ends[1]! - ends[0]! - 1, true);
  view.setUint32(SPAWN.tableLength, ends.length, true);
  return frame;
}

/** How a spawner process is started: the Perl script, or the native binary. */
interface Launcher {
  readonly kind: "perl" | "native";
  readonly program: string;
  readonly args: string[];
  readonly env: Record<string, string>;
}

function perlLauncher(perl: string): Launcher {
  return {
    kind: "perl",
    program: perl,
    // The script comes through the environment and the process names itself, so `ps` shows one
    // short line for it.
    args: ["-e", LOADER, ...SYSCALLS[Deno.build.arch]!.map(String), String(Deno.pid)],
    env: { PATH: "/usr/bin:/bin", LC_ALL: "C", [SCRIPT_ENV]: SCRIPT },
  };
}

function nativeLauncher(binary: string): Launcher {
  return {
    kind: "native",
    program: binary,
    args: [String(Deno.pid)],
    env: { PATH: "/usr/bin:/bin", LC_ALL: "C" },
  };
}

/** One running spawner process and the tasks it started. */
class SpawnerProcess {
  readonly #child: Deno.ChildProcess;
  readonly #writer: WritableStreamDefaultWriter<Uint8Array>;
  /** Requests to write at the end of this turn (see #write). */
  #outgoing: Uint8Array[] = [];
  readonly #tasks = new Map<number, SpawnedTask>();
  /** Spawns not answered yet: the program and who waits. */
  readonly #pending = new Map<
    number,
    { program: string; resolve: (result: SpawnedTask | Error | undefined) => void }
  >();
  readonly ready: Promise<boolean>;
  readonly done: Promise<void>;
  #nextId = 1;
  /** The spawner's pid, once it is ready. */
  pid?: number;
  readonly kind: Launcher["kind"];
  #stderrTail = "";
  #alive = true;
  #markReady!: (ok: boolean) => void;

  constructor(launcher: Launcher) {
    this.kind = launcher.kind;
    this.#child = new Deno.Command(launcher.program, {
      args: launcher.args,
      clearEnv: true,
      env: launcher.env,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.ready = new Promise((resolve) => this.#markReady = resolve);
    this.done = Promise.all([this.#read(), this.#readStderr()]).then(async () => {
      await this.#child.status;
    });
  }

  get alive(): boolean {
    return this.#alive;
  }

  /**
   * Starts one task; undefined when this spawner died before it answered, or when a string of the
   * request holds a NUL (the usual path reports it).
   */
  spawn(request: SpawnRequest): Promise<SpawnedTask | Error | undefined> {
    const id = this.#nextId;
    const frame = spawnRequestFrame(id, request);
    if (!frame) return Promise.resolve(undefined);
    this.#nextId++;
    const result = new Promise<SpawnedTask | Error | undefined>((resolve) =>
      this.#pending.set(id, { program: request.program, resolve })
    );
    this.#write(frame);
    return result;
  }

  #send(fields: string[]): void {
    const body = encoder.encode(fields.join("\0"));
    const frame = new Uint8Array(4 + body.length);
    new DataView(frame.buffer).setUint32(0, body.length);
    frame.set(body, 4);
    this.#write(frame);
  }

  /**
   * Queues a request; those of one turn of the event loop leave together at its end in one write:
   * a RunTasks batch's spawns then cost one write here and come to the spawner in one read, which
   * forks them back to back (see SCRIPT).
   */
  #write(frame: Uint8Array): void {
    if (this.#outgoing.length === 0) queueMicrotask(() => this.#flushOutgoing());
    this.#outgoing.push(frame);
  }

  #flushOutgoing(): void {
    if (this.#outgoing.length === 0) return; // close() flushed them
    const frames = this.#outgoing;
    this.#outgoing = [];
    const data = frames.length === 1 ? frames[0]! : concat(frames);
    this.#writer.write(data).catch(() => {}); // a dead spawner shows in #read
  }

  /** Closes stdin: the spawner kills what is left, reaps it and exits. */
  async close(): Promise<void> {
    if (this.#outgoing.length) this.#flushOutgoing(); // before the end of stdin
    await this.#writer.close().catch(() => {});
    await this.done;
  }

  /** Kills the spawner (tests). */
  kill(): void {
    try {
      this.#child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
  }

  async #readStderr(): Promise<void> {
    for await (const chunk of this.#child.stderr) {
      this.#stderrTail = (this.#stderrTail + decoder.decode(chunk)).slice(-500);
    }
  }

  async #read(): Promise<void> {
    let buffer = new Uint8Array(0);
    try {
      for await (const chunk of this.#child.stdout) {
        let data = chunk;
        if (buffer.length) {
          data = new Uint8Array(buffer.length + chunk.length);
          data.set(buffer);
          data.set(chunk, buffer.length);
        }
        const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
        let at = 0;
        while (data.length - at >= HEADER_BYTES) {
          const length = view.getUint32(at + 5);
          if (data.length - at < HEADER_BYTES + length) break;
          const id = view.getUint32(at);
          const type = String.fromCharCode(data[at + 4]!);
          const payload = data.subarray(at + HEADER_BYTES, at + HEADER_BYTES + length);
          at += HEADER_BYTES + length;
          this.#record(id, type, payload);
        }
        buffer = at === data.length ? new Uint8Array(0) : data.slice(at);
      }
    } catch {
      // The pipe broke: the spawner is gone.
    }
    this.#alive = false;
    this.#markReady(false);
    const status = await this.#child.status;
    const why = this.#stderrTail.trim();
    const lost = `the worker's task spawner exited (${
      status.signal ? `signal ${status.signal}` : `code ${status.code}`
    }${why ? `: ${why}` : ""}), which kills the tasks it started`;
    for (const pending of this.#pending.values()) pending.resolve(undefined);
    this.#pending.clear();
    for (const task of this.#tasks.values()) {
      task.exited = true;
      task.feeds.O.end();
      task.feeds.E.end();
      task.settle({ code: 137, signal: "SIGKILL", lost });
    }
    this.#tasks.clear();
  }

  #record(id: number, type: string, payload: Uint8Array): void {
    switch (type) {
      case "R":
        this.pid = Number(decoder.decode(payload));
        this.#markReady(true);
        return;
      case "P": {
        // Requests about the task: op, task id, then the rest.
        const task = new SpawnedTask(([op, ...rest]) => {
          if (this.#alive) this.#send([op!, String(id), ...rest]);
        });
        task.pid = Number(decoder.decode(payload));
        task.program = this.#pending.get(id)?.program ?? "";
        this.#tasks.set(id, task);
        this.#pending.get(id)?.resolve(task);
        this.#pending.delete(id);
        return;
      }
      case "F": {
        const [stage = "spawn", errno = "0"] = decoder.decode(payload).split(" ");
        const pending = this.#pending.get(id);
        const task = this.#tasks.get(id);
        // Before the start (no pipe, no fork): the spawn fails; after it: the exit carries it.
        if (pending) {
          this.#pending.delete(id);
          pending.resolve(spawnError(pending.program, stage, Number(errno)));
        } else if (task) task.failure = spawnError(task.program, stage, Number(errno));
        return;
      }
      case "O":
      case "E":
        this.#tasks.get(id)?.feeds[type].push(payload);
        return;
      case "o":
      case "e": {
        const task = this.#tasks.get(id);
        task?.feeds[type.toUpperCase() as "O" | "E"].end();
        if (task?.finished) this.#tasks.delete(id);
        return;
      }
      case "X": {
        const task = this.#tasks.get(id);
        if (!task) return;
        task.exited = true;
        task.settle({
          ...decodeWaitStatus(Number(decoder.decode(payload))),
          spawnError: task.failure,
        });
        if (task.finished) this.#tasks.delete(id);
        // Streams still open belong to what the task left behind; the runner drains or cancels them.
        return;
      }
    }
  }
}

/**
 * A worker's task spawner: started on the first task, restarted after it dies (up to
 * {@linkcode MAX_RESTARTS} times), stopped with {@linkcode close}.
 */
export class TaskSpawner {
  readonly #perl: string | null;
  readonly #native: NativeSpawner | null;
  /** The native spawner would not start here: Perl from then on. */
  #nativeFailed = false;
  #current?: SpawnerProcess;
  #deaths = 0;
  #unusable = false;
  #closed = false;
  #starting?: Promise<SpawnerProcess | undefined>;
  readonly #stopping: Promise<void>[] = [];

  /**
   * @param perl the perl interpreter @default /usr/bin/perl or /bin/perl
   * @param native the native spawner (spawner_native.ts), tried before Perl; null: Perl only
   */
  constructor(perl: string | null = findUtil("perl"), native: NativeSpawner | null = null) {
    this.#perl = perl;
    this.#native = native;
  }

  /**
   * True when tasks may start through a spawner in this thread: Linux on an architecture whose
   * syscall numbers are known, perl present, running programs not restricted, and not turned off
   * with `IRIS_TASK_SPAWNER=0`.
   */
  static supported(): boolean {
    if (Deno.build.os !== "linux" || !SYSCALLS[Deno.build.arch]) return false;
    if (spawnerSetting() === "0") return false;
    try {
      if (Deno.permissions.querySync({ name: "run" }).state !== "granted") return false;
    } catch {
      return false;
    }
    return findUtil("perl") !== null;
  }

  /**
   * Whether the native spawner may be tried (`IRIS_TASK_SPAWNER` unset or `native`; `perl` keeps
   * the Perl one).
   */
  static nativeAllowed(): boolean {
    return spawnerSetting() !== "perl";
  }

  /** The spawner's pid (tests), once started. */
  get pid(): number | undefined {
    return this.#current?.alive ? this.#current.pid : undefined;
  }

  /** Which spawner runs (tests, benchmarks), once started. */
  get kind(): "perl" | "native" | undefined {
    return this.#current?.alive ? this.#current.kind : undefined;
  }

  /**
   * Starts a task. Undefined when the spawner cannot be used (never started, died too often,
   * closed, died while answering, or a string of the request holds a NUL): the caller then starts
   * the task the usual way (which reports a NUL).
   * @throws a Deno.errors error like Deno.Command.spawn's when the program or cwd is missing
   */
  async spawn(request: SpawnRequest): Promise<TaskChild | undefined> {
    const current = await this.#running();
    if (!current) return undefined;
    const result = await current.spawn(request);
    if (result instanceof Error) throw result;
    return result;
  }

  /** The running spawner, started (or restarted) when needed; shared by concurrent callers. */
  #running(): Promise<SpawnerProcess | undefined> {
    if (this.#closed || this.#unusable || (!this.#perl && !this.#native)) {
      return Promise.resolve(undefined);
    }
    if (this.#current && !this.#current.alive) {
      // A native spawner that died is not tried again: Perl from then on.
      if (this.#current.kind === "native") this.#nativeFailed = true;
      this.#stopping.push(this.#current.done);
      this.#current = undefined;
      this.#starting = undefined;
      if (++this.#deaths > MAX_RESTARTS) this.#unusable = true;
    }
    if (this.#unusable) return Promise.resolve(undefined);
    this.#starting ??= this.#start();
    return this.#starting;
  }

  /** The native spawner where it compiles and starts, else the Perl one. */
  async #start(): Promise<SpawnerProcess | undefined> {
    if (this.#native && !this.#nativeFailed) {
      const binary = await this.#native.binary().catch(() => null);
      const started = binary && !this.#closed
        ? await this.#launch(nativeLauncher(binary))
        : undefined;
      if (started) return started;
      this.#nativeFailed = true;
    }
    if (!this.#perl || this.#closed) {
      this.#unusable = true;
      return undefined;
    }
    const started = await this.#launch(perlLauncher(this.#perl));
    // Died before its first record: this host cannot run it (no prctl, a broken perl).
    if (!started) this.#unusable = true;
    return started;
  }

  async #launch(launcher: Launcher): Promise<SpawnerProcess | undefined> {
    let started: SpawnerProcess;
    try {
      started = new SpawnerProcess(launcher);
    } catch {
      return undefined;
    }
    this.#current = started;
    if (await started.ready) return started;
    this.#current = undefined;
    this.#stopping.push(started.done);
    return undefined;
  }

  /** Test hook: kills the running spawner process. */
  killForTest(): void {
    this.#current?.kill();
  }

  /** Stops the spawner (after its tasks ended) and waits for it. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#starting; // a compile or a start under way ends first
    await this.#current?.close();
    await Promise.all(this.#stopping);
  }
}
