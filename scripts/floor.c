// SPDX-License-Identifier: Apache-2.0
// The floor for `run /bin/true` in scripts/bench-lifecycle: the fewest
// syscalls that give the benchmark's bundle what its config.json asks for,
// with nothing a real runtime also needs (no config parsing or validation,
// no state dir, no lock, no re-exec, no error reporting, no hooks). It takes
// the runtime command line the benchmark gives (`--root R run --bundle B
// ID`) and does, in order:
//   parent: a cgroup in every v1 hierarchy, the device cgroup (deny all,
//     then runc's default allow list), clone into new mount, pid, network,
//     ipc and uts namespaces, the child's pid into the cgroups, wait, rmdir;
//   child: hostname, / made a slave, the rootfs bound on itself, the seven
//     mounts (the cgroup one as a tmpfs of read-only binds), six device
//     nodes and the /dev links, pivot_root, masked and readonly paths, the
//     root read-only, rlimit, bounding set and capabilities, no_new_privs,
//     execve.
// Build: cc -O2 -o floor scripts/floor.c (the benchmark does).
#define _GNU_SOURCE
// Paths here are short; a truncated one fails loudly at its syscall.
#pragma GCC diagnostic ignored "-Wformat-truncation"
#include <dirent.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static void die(const char *what) {
  perror(what);
  _exit(1);
}

static void put(const char *path, const char *value) {
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0 || write(fd, value, strlen(value)) < 0) die(path);
  close(fd);
}

#define MAXH 16
static char cg[MAXH][1024];
static char cgname[MAXH][256];
static int ncg;

static const char *allow[] = {
    "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm",
    "c 1:5 rwm", "c 1:9 rwm", "c 5:1 rwm", "c 136:* rwm", "c 5:2 rwm",
};

static void cgroups_make(const char *id) {
  DIR *d = opendir("/sys/fs/cgroup");
  struct dirent *e;
  char p[8192];
  if (!d) die("/sys/fs/cgroup");
  while ((e = readdir(d)) && ncg < MAXH) {
    struct stat st;
    if (e->d_name[0] == '.' || e->d_type == DT_LNK) continue;
    snprintf(p, sizeof p, "/sys/fs/cgroup/%s/cgroup.procs", e->d_name);
    if (stat(p, &st) < 0) continue;
    snprintf(cg[ncg], sizeof cg[ncg], "/sys/fs/cgroup/%s/%s", e->d_name, id);
    snprintf(cgname[ncg], sizeof cgname[ncg], "%s", e->d_name);
    if (mkdir(cg[ncg], 0755) < 0) die(cg[ncg]);
    if (!strcmp(e->d_name, "cpuset")) {
      // A v1 cpuset cgroup takes no process until it has cpus and mems.
      static const char *files[] = {"cpuset.cpus", "cpuset.mems"};
      for (int i = 0; i < 2; i++) {
        char v[256] = "";
        snprintf(p, sizeof p, "/sys/fs/cgroup/%s/%s", e->d_name, files[i]);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, v, sizeof v - 1);
        if (n < 0) die(p);
        v[n] = 0;
        close(fd);
        snprintf(p, sizeof p, "%s/%s", cg[ncg], files[i]);
        put(p, v);
      }
    }
    if (!strcmp(e->d_name, "devices")) {
      snprintf(p, sizeof p, "%s/devices.deny", cg[ncg]);
      put(p, "a");
      snprintf(p, sizeof p, "%s/devices.allow", cg[ncg]);
      for (size_t i = 0; i < sizeof allow / sizeof *allow; i++) put(p, allow[i]);
    }
    ncg++;
  }
  closedir(d);
}

static void mnt(const char *src, const char *dst, const char *type, unsigned long flags,
                const char *data) {
  if (mount(src, dst, type, flags, data) < 0) die(dst);
}

static void child(const char *rootfs, int sync) {
  char c;
  char p[8192];
  if (read(sync, &c, 1) != 1) die("sync");
  sethostname("ocirun", 6);
  mnt(NULL, "/", NULL, MS_SLAVE | MS_REC, NULL);
  mnt(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL);
  if (chdir(rootfs) < 0) die(rootfs);
  mnt("proc", "proc", "proc", 0, NULL);
  mnt("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");
  mkdir("dev/pts", 0755);
  mnt("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
      "newinstance,ptmxmode=0666,mode=0620,gid=5");
  mkdir("dev/shm", 0755);
  mnt("shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=1777,size=65536k");
  mkdir("dev/mqueue", 0755);
  mnt("mqueue", "dev/mqueue", "mqueue", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL);
  mnt("sysfs", "sys", "sysfs", MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY, NULL);
  mnt("tmpfs", "sys/fs/cgroup", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=755");
  for (int i = 0; i < ncg; i++) {
    snprintf(p, sizeof p, "sys/fs/cgroup/%s", cgname[i]);
    mkdir(p, 0755);
    mnt(cg[i], p, NULL, MS_BIND | MS_REC, NULL);
    mnt(NULL, p, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL);
  }
  static const struct { const char *path; int major, minor; } devs[] = {
      {"dev/null", 1, 3}, {"dev/zero", 1, 5},    {"dev/full", 1, 7},
      {"dev/random", 1, 8}, {"dev/urandom", 1, 9}, {"dev/tty", 5, 0},
  };
  for (size_t i = 0; i < sizeof devs / sizeof *devs; i++) {
    if (mknod(devs[i].path, S_IFCHR | 0666, makedev(devs[i].major, devs[i].minor)) < 0)
      die(devs[i].path);
    chmod(devs[i].path, 0666);
  }
  symlink("/proc/self/fd", "dev/fd");
  symlink("/proc/self/fd/0", "dev/stdin");
  symlink("/proc/self/fd/1", "dev/stdout");
  symlink("/proc/self/fd/2", "dev/stderr");
  symlink("/proc/kcore", "dev/core");
  symlink("pts/ptmx", "dev/ptmx");
  if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root");
  mnt(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL);
  if (umount2(".", MNT_DETACH) < 0) die("umount old root");
  if (chdir("/") < 0) die("/");
  static const char *masked[] = {"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                                 "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                                 "/proc/sched_debug", "/sys/firmware", "/proc/scsi"};
  for (size_t i = 0; i < sizeof masked / sizeof *masked; i++) {
    struct stat st;
    if (stat(masked[i], &st) < 0) continue;
    if (S_ISDIR(st.st_mode))
      mnt("tmpfs", masked[i], "tmpfs", MS_RDONLY, NULL);
    else
      mnt("/dev/null", masked[i], NULL, MS_BIND, NULL);
  }
  static const char *ro[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                             "/proc/sysrq-trigger"};
  for (size_t i = 0; i < sizeof ro / sizeof *ro; i++) {
    if (mount(ro[i], ro[i], NULL, MS_BIND | MS_REC, NULL) < 0) continue;
    mnt(NULL, ro[i], NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC, NULL);
  }
  mnt(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL);
  struct rlimit rl = {1024, 1024};
  setrlimit(RLIMIT_NOFILE, &rl);
  unsigned long keep = (1UL << CAP_KILL) | (1UL << CAP_AUDIT_WRITE) | (1UL << CAP_NET_BIND_SERVICE);
  for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
    if (!(keep & (1UL << cap))) prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
  struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2] = {{(unsigned)keep, (unsigned)keep, 0}, {0, 0, 0}};
  if (syscall(SYS_capset, &h, data) < 0) die("capset");
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  char *argv[] = {"/bin/true", NULL};
  char *envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                  "TERM=xterm", "HOME=/root", NULL};
  execve(argv[0], argv, envp);
  die("execve");
}

int main(int argc, char **argv) {
  const char *bundle = NULL, *id = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--bundle") && i + 1 < argc) bundle = argv[++i];
    else if (!strcmp(argv[i], "--root") && i + 1 < argc) i++;
    else if (strcmp(argv[i], "run")) id = argv[i];
  }
  if (!bundle || !id) {
    fprintf(stderr, "usage: floor [--root R] run --bundle BUNDLE ID\n");
    return 2;
  }
  char rootfs[512];
  snprintf(rootfs, sizeof rootfs, "%s/rootfs", bundle);
  cgroups_make(id);
  int sync[2];
  if (pipe2(sync, O_CLOEXEC) < 0) die("pipe");
  pid_t pid = syscall(SYS_clone, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
                                     CLONE_NEWUTS | SIGCHLD, NULL, NULL, NULL, NULL);
  if (pid < 0) die("clone");
  if (pid == 0) {
    close(sync[1]);
    child(rootfs, sync[0]);
  }
  close(sync[0]);
  char p[sizeof cg[0] + 16], s[32];
  snprintf(s, sizeof s, "%d", pid);
  for (int i = 0; i < ncg; i++) {
    snprintf(p, sizeof p, "%s/cgroup.procs", cg[i]);
    put(p, s);
  }
  if (write(sync[1], "x", 1) != 1) die("sync");
  int status;
  if (waitpid(pid, &status, 0) < 0) die("waitpid");
  for (int i = 0; i < ncg; i++) rmdir(cg[i]);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
