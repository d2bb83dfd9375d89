/* Credentials: uids and gids (real, effective, saved, fs all different), supplementary groups,
 * capability sets (effective, permitted, inheritable, bounding, ambient) and securebits of a
 * process that dropped root. Must run as root. CAP_DAC_OVERRIDE stays effective so that the
 * result file (root's) stays writable. */
#define _GNU_SOURCE
#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <stdint.h>
#include <string.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "zdtmtst.h"

struct creds {
  uid_t uid[3], fsuid;
  gid_t gid[3], fsgid;
  int ngroups;
  gid_t groups[16];
  struct __user_cap_data_struct caps[2];
  uint64_t bounding, ambient;
  int securebits;
};

static uint64_t bit(int cap) {
  return 1ULL << cap;
}

static int set_caps(uint64_t effective, uint64_t permitted, uint64_t inheritable) {
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  for (int i = 0; i < 2; i++) {
    data[i].effective = (uint32_t)(effective >> (32 * i));
    data[i].permitted = (uint32_t)(permitted >> (32 * i));
    data[i].inheritable = (uint32_t)(inheritable >> (32 * i));
  }
  return (int)syscall(SYS_capset, &header, data);
}

static void read_creds(struct creds* c) {
  memset(c, 0, sizeof *c);
  getresuid(&c->uid[0], &c->uid[1], &c->uid[2]);
  getresgid(&c->gid[0], &c->gid[1], &c->gid[2]);
  c->fsuid = (uid_t)setfsuid((uid_t)-1);
  c->fsgid = (gid_t)setfsgid((gid_t)-1);
  c->ngroups = getgroups(16, c->groups);
  struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
  syscall(SYS_capget, &header, c->caps);
  for (int cap = 0; cap < 64; cap++) {
    if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) == 1) c->bounding |= bit(cap);
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) == 1) c->ambient |= bit(cap);
  }
  c->securebits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  gid_t groups[] = {4, 24, 100, 65000};
  if (setgroups(4, groups) != 0) test_fail("setgroups (run as root)");
  if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) test_fail("keepcaps");
  if (setresgid(1101, 1102, 1103) != 0) test_fail("setresgid");
  if (setresuid(2101, 2102, 2103) != 0) test_fail("setresuid");
  uint64_t working = bit(CAP_SETUID) | bit(CAP_SETGID) | bit(CAP_SETPCAP) | bit(CAP_DAC_OVERRIDE) |
                     bit(CAP_NET_RAW) | bit(CAP_NET_BIND_SERVICE) | bit(CAP_KILL);
  if (set_caps(working, working, bit(CAP_NET_BIND_SERVICE) | bit(CAP_KILL)) != 0)
    test_fail("capset");
  setfsgid(1104);
  setfsuid(2104);
  if (prctl(PR_CAPBSET_DROP, CAP_SYS_MODULE, 0, 0, 0) || prctl(PR_CAPBSET_DROP, CAP_MKNOD, 0, 0, 0))
    test_fail("bounding drop");
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0)) test_fail("ambient");
  if (prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP, 0, 0, 0))
    test_fail("securebits");
  uint64_t permitted =
      bit(CAP_DAC_OVERRIDE) | bit(CAP_NET_RAW) | bit(CAP_NET_BIND_SERVICE) | bit(CAP_KILL);
  if (set_caps(bit(CAP_DAC_OVERRIDE) | bit(CAP_NET_RAW), permitted,
               bit(CAP_NET_BIND_SERVICE) | bit(CAP_KILL)) != 0)
    test_fail("final capset");
  struct creds before;
  read_creds(&before);
  test_ready();
  test_wait_for_sigterm();

  struct creds after;
  read_creds(&after);
  if (memcmp(before.uid, after.uid, sizeof before.uid) || before.fsuid != after.fsuid)
    test_fail("uids %u/%u/%u/%u", after.uid[0], after.uid[1], after.uid[2], after.fsuid);
  if (memcmp(before.gid, after.gid, sizeof before.gid) || before.fsgid != after.fsgid)
    test_fail("gids %u/%u/%u/%u", after.gid[0], after.gid[1], after.gid[2], after.fsgid);
  if (before.ngroups != after.ngroups || memcmp(before.groups, after.groups, sizeof before.groups))
    test_fail("groups (%d now)", after.ngroups);
  if (memcmp(before.caps, after.caps, sizeof before.caps))
    test_fail("capabilities: eff %#x prm %#x inh %#x", after.caps[0].effective,
              after.caps[0].permitted, after.caps[0].inheritable);
  if (before.bounding != after.bounding)
    test_fail("bounding %#llx", (unsigned long long)after.bounding);
  if (before.ambient != after.ambient)
    test_fail("ambient %#llx", (unsigned long long)after.ambient);
  if (before.securebits != after.securebits) test_fail("securebits %#x", after.securebits);
  test_pass();
}
