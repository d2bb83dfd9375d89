#include "checkpoint/ipc.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <mqueue.h>
#include <sched.h>
#include <signal.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string_view>

#include "checkpoint/file_kinds/file_kind.h"
#include "checkpoint/image/image_file.h"
#include "checkpoint/remote_addr.h"
#include "checkpoint/threads.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strings.h"

namespace cryo::ckpt {

namespace {

// The per-namespace IPC limits (ipc/ipc_sysctl.c, ipc/mq_sysctl.c), restored before the objects:
// message queues larger than the namespace's limits could not be created again otherwise.
constexpr const char* kIpcSysctls[] = {"kernel/shmmax",
                                       "kernel/shmall",
                                       "kernel/shmmni",
                                       "kernel/shm_rmid_forced",
                                       "kernel/msgmax",
                                       "kernel/msgmnb",
                                       "kernel/msgmni",
                                       "kernel/sem",
                                       "fs/mqueue/queues_max",
                                       "fs/mqueue/msg_max",
                                       "fs/mqueue/msgsize_max",
                                       "fs/mqueue/msg_default",
                                       "fs/mqueue/msgsize_default"};

union SemArg {
  int val;
  semid_ds* buf;
  unsigned short* array;
};

std::string ns_link(const std::string& pid) {
  return fs::read_link("/proc/" + pid + "/ns/ipc");
}

// A procfs of our own PID namespace, mounted nowhere: a container restore runs inside the
// container's root, where /proc/sys is read-only and /proc may be another PID namespace's. The
// IPC sysctls it shows are those of the calling thread's IPC namespace.
int own_proc() {
  static UniqueFd proc;
  if (proc) return proc.get();
  UniqueFd context(static_cast<int>(::syscall(SYS_fsopen, "proc", FSOPEN_CLOEXEC)));
  if (context &&
      ::syscall(SYS_fsconfig, context.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) == 0)
    proc.reset(static_cast<int>(::syscall(SYS_fsmount, context.get(), FSMOUNT_CLOEXEC, 0)));
  if (!proc) proc = fs::open_or_throw("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC);
  return proc.get();
}

std::optional<std::string> read_proc_sys(const std::string& name) {
  UniqueFd fd(::openat(own_proc(), ("sys/" + name).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  char buffer[256];
  ssize_t n = ::read(fd.get(), buffer, sizeof buffer - 1);
  if (n < 0) throw_errno("read /proc/sys/" + name);
  return std::string(trim(std::string_view(buffer, static_cast<size_t>(n))));
}

void write_proc_sys(const std::string& name, const std::string& value) {
  std::string path = "/proc/sys/" + name;
  UniqueFd fd(::openat(own_proc(), ("sys/" + name).c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) throw_errno("open " + path);
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
    throw_errno("write " + value + " to " + path);
}

// The calling thread in another IPC namespace for as long as this lives.
class IpcNamespaceSwitch {
 public:
  explicit IpcNamespaceSwitch(int target) {
    original_ = fs::open_or_throw("/proc/thread-self/ns/ipc", O_RDONLY | O_CLOEXEC);
    if (::setns(target, CLONE_NEWIPC) < 0) throw_errno("setns to the tree's IPC namespace");
  }
  ~IpcNamespaceSwitch() {
    if (::setns(original_.get(), CLONE_NEWIPC) < 0) {
      LOG_ERROR << "cannot return to the dumper's IPC namespace: " << std::strerror(errno);
    }
  }
  IpcNamespaceSwitch(const IpcNamespaceSwitch&) = delete;
  IpcNamespaceSwitch& operator=(const IpcNamespaceSwitch&) = delete;

 private:
  UniqueFd original_;
};

// A System V segment attached in this process, detached on destruction; `file` is the segment's
// memory as a file (through map_files), to read or write it with holes skipped.
class ShmAttachment {
 public:
  ShmAttachment(int id, size_t size, bool read_only) {
    void* at = ::shmat(id, nullptr, read_only ? SHM_RDONLY : 0);
    if (at == reinterpret_cast<void*>(-1))
      throw_errno("shmat of System V shared memory segment " + std::to_string(id));
    address_ = at;
    size_t mapped = (size + kPageSize - 1) / kPageSize * kPageSize;
    char range[96];
    std::snprintf(range, sizeof range, "%d/map_files/%lx-%lx", static_cast<int>(::getpid()),
                  reinterpret_cast<unsigned long>(at),
                  reinterpret_cast<unsigned long>(at) + mapped);
    file_.reset(::openat(own_proc(), range, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
    if (!file_) {
      int err = errno;
      ::shmdt(address_);
      throw_errno(std::string("open /proc/") + range, err);
    }
  }
  ~ShmAttachment() { ::shmdt(address_); }
  ShmAttachment(const ShmAttachment&) = delete;
  ShmAttachment& operator=(const ShmAttachment&) = delete;
  int file() const { return file_.get(); }

 private:
  void* address_ = nullptr;
  UniqueFd file_;
};

json perm_to_json(const ipc_perm& perm, int id) {
  return {{"id", id},
          {"key", static_cast<int64_t>(perm.__key)},
          {"mode", static_cast<unsigned>(perm.mode)},
          {"uid", perm.uid},
          {"gid", perm.gid},
          {"cuid", perm.cuid},
          {"cgid", perm.cgid}};
}

json dump_shm(ImageSink& sink) {
  json list = json::array();
  shm_info info{};
  int max_index = ::shmctl(0, SHM_INFO, reinterpret_cast<shmid_ds*>(&info));
  if (max_index < 0) throw_errno("shmctl SHM_INFO");
  for (int index = 0; index <= max_index; ++index) {
    shmid_ds ds{};
    int id = ::shmctl(index, SHM_STAT, &ds);
    if (id < 0) continue;  // a free slot
    json entry = perm_to_json(ds.shm_perm, id);
    entry["size"] = static_cast<uint64_t>(ds.shm_segsz);
    with_context("dumping System V shared memory segment " + std::to_string(id), [&] {
      ShmAttachment attachment(id, ds.shm_segsz, true);
      std::string name = "ipc-shm-" + std::to_string(id) + ".img";
      entry["image"] = name;
      entry["content"] = files::dump_file_content(sink, name, attachment.file());
    });
    list.push_back(entry);
  }
  return list;
}

json dump_sem() {
  json list = json::array();
  seminfo info{};
  SemArg arg;
  arg.buf = reinterpret_cast<semid_ds*>(&info);
  int max_index = ::semctl(0, 0, SEM_INFO, arg);
  if (max_index < 0) throw_errno("semctl SEM_INFO");
  for (int index = 0; index <= max_index; ++index) {
    semid_ds ds{};
    arg.buf = &ds;
    int id = ::semctl(index, 0, SEM_STAT, arg);
    if (id < 0) continue;
    json entry = perm_to_json(ds.sem_perm, id);
    std::vector<unsigned short> values(ds.sem_nsems);
    arg.array = values.data();
    if (::semctl(id, 0, GETALL, arg) < 0)
      throw_errno("semctl GETALL of semaphore set " + std::to_string(id));
    entry["values"] = values;
    list.push_back(entry);
  }
  return list;
}

json dump_msg() {
  json list = json::array();
  msginfo info{};
  int max_index = ::msgctl(0, MSG_INFO, reinterpret_cast<msqid_ds*>(&info));
  if (max_index < 0) throw_errno("msgctl MSG_INFO");
  // A message is at most msgmax bytes; the buffer holds its type too.
  std::vector<char> buffer(sizeof(long) + static_cast<size_t>(info.msgmax));
  for (int index = 0; index <= max_index; ++index) {
    msqid_ds ds{};
    int id = ::msgctl(index, MSG_STAT, &ds);
    if (id < 0) continue;
    json entry = perm_to_json(ds.msg_perm, id);
    entry["qbytes"] = static_cast<uint64_t>(ds.msg_qbytes);
    json messages = json::array();
    // MSG_COPY reads the message at an index without taking it off the queue.
    for (msgqnum_t i = 0; i < ds.msg_qnum; ++i) {
      ssize_t n = ::msgrcv(id, buffer.data(), buffer.size() - sizeof(long), static_cast<long>(i),
                           IPC_NOWAIT | MSG_COPY);
      if (n < 0)
        throw_errno("msgrcv MSG_COPY of message " + std::to_string(i) + " of message queue " +
                    std::to_string(id));
      long type;
      std::memcpy(&type, buffer.data(), sizeof type);
      messages.push_back(
          {{"type", type},
           {"data", base64_encode(buffer.data() + sizeof(long), static_cast<size_t>(n))}});
    }
    entry["messages"] = messages;
    list.push_back(entry);
  }
  return list;
}

// The namespace's mqueue file system, mounted nowhere (fsmount): its directory lists the queues.
UniqueFd mount_mqueue_of_current_namespace() {
  UniqueFd context(static_cast<int>(::syscall(SYS_fsopen, "mqueue", FSOPEN_CLOEXEC)));
  if (!context) throw_errno("fsopen mqueue");
  if (::syscall(SYS_fsconfig, context.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) < 0)
    throw_errno("fsconfig FSCONFIG_CMD_CREATE of mqueue");
  UniqueFd mount(static_cast<int>(::syscall(SYS_fsmount, context.get(), FSMOUNT_CLOEXEC, 0)));
  if (!mount) throw_errno("fsmount mqueue");
  return mount;
}

json dump_one_mqueue(int mount, const std::string& name) {
  UniqueFd queue(::openat(mount, name.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!queue) throw_errno("open");
  char status[256] = {};
  if (::pread(queue.get(), status, sizeof status - 1, 0) < 0) throw_errno("read the queue status");
  const char* notify_pid = std::strstr(status, "NOTIFY_PID:");
  if (notify_pid != nullptr && std::atoi(notify_pid + 11) != 0)
    throw Error("not supported yet: a POSIX message queue with a notification (mq_notify)");
  struct stat st {};
  if (::fstat(queue.get(), &st) < 0) throw_errno("fstat");
  mq_attr attr{};
  if (::mq_getattr(queue.get(), &attr) < 0) throw_errno("mq_getattr");
  // Every message is taken off (highest priority first, FIFO within a priority) and put back in
  // the same order: the queue ends as it was, and its copy is built in the same order.
  std::vector<std::pair<unsigned, std::string>> messages;
  std::string buffer(static_cast<size_t>(attr.mq_msgsize), '\0');
  for (;;) {
    unsigned priority = 0;
    ssize_t n = ::mq_receive(queue.get(), buffer.data(), buffer.size(), &priority);
    if (n < 0) {
      if (errno == EAGAIN) break;
      int err = errno;
      for (auto& [p, data] : messages) ::mq_send(queue.get(), data.data(), data.size(), p);
      throw_errno("mq_receive", err);
    }
    messages.push_back({priority, buffer.substr(0, static_cast<size_t>(n))});
  }
  int lost = 0, first_error = 0;
  for (auto& [priority, data] : messages) {
    if (::mq_send(queue.get(), data.data(), data.size(), priority) < 0) {
      first_error = first_error ? first_error : errno;
      ++lost;
    }
  }
  if (lost)
    throw_errno("putting " + std::to_string(lost) + " dumped messages back into the queue",
                first_error);
  json list = json::array();
  for (auto& [priority, data] : messages)
    list.push_back({{"priority", priority}, {"data", base64_encode(data.data(), data.size())}});
  return {{"name", name},
          {"mode", static_cast<unsigned>(st.st_mode & 07777)},
          {"uid", st.st_uid},
          {"gid", st.st_gid},
          {"maxmsg", attr.mq_maxmsg},
          {"msgsize", attr.mq_msgsize},
          {"messages", list}};
}

json dump_mqueues() {
  UniqueFd mount = mount_mqueue_of_current_namespace();
  UniqueFd dir_fd(::openat(mount.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir_fd) throw_errno("open the mqueue directory");
  DIR* dir = ::fdopendir(dir_fd.get());
  if (dir == nullptr) throw_errno("fdopendir of the mqueue directory");
  dir_fd.release();
  std::unique_ptr<DIR, int (*)(DIR*)> closer(dir, ::closedir);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(dir))
    if (e->d_type == DT_REG) names.push_back(e->d_name);
  std::sort(names.begin(), names.end());
  json list = json::array();
  for (const std::string& name : names)
    list.push_back(with_context("dumping POSIX message queue /" + name,
                                [&] { return dump_one_mqueue(mount.get(), name); }));
  return list;
}

json dump_sysctls() {
  json values = json::object();
  for (const char* name : kIpcSysctls) {
    if (auto text = read_proc_sys(name)) values[name] = *text;
  }
  return values;
}

// The next object created of `kind` ("shm", "sem", "msg") gets `id`.
void set_next_id(const char* kind, int id) {
  write_proc_sys(std::string("kernel/") + kind + "_next_id", std::to_string(id));
}

void check_created_id(const char* what, int wanted, int got) {
  if (got < 0) throw_errno(std::string("creating ") + what + " " + std::to_string(wanted));
  if (got != wanted)
    throw Error(std::string("creating ") + what + " " + std::to_string(wanted) + ": got id " +
                std::to_string(got));
}

template <typename Perm>
void fill_perm(Perm& perm, const json& entry) {
  perm.uid = entry.at("uid");
  perm.gid = entry.at("gid");
  perm.mode = static_cast<unsigned short>(entry.at("mode").get<unsigned>() & 0777);
}

void restore_shm(const std::string& image_dir, const json& entry, std::vector<int>* removed) {
  int id = entry.at("id");
  auto key = static_cast<key_t>(entry.at("key").get<int64_t>());
  unsigned mode = entry.at("mode");
  size_t size = entry.at("size");
  set_next_id("shm", id);
  int got = ::shmget(key, size, IPC_CREAT | IPC_EXCL | static_cast<int>(mode & 0777));
  check_created_id("System V shared memory segment", id, got);
  {
    ShmAttachment attachment(id, size, false);
    files::restore_file_content(image_dir, entry.at("image"), attachment.file(),
                                entry.at("content"));
  }
  shmid_ds ds{};
  if (::shmctl(id, IPC_STAT, &ds) < 0) throw_errno("shmctl IPC_STAT");
  fill_perm(ds.shm_perm, entry);
  if (::shmctl(id, IPC_SET, &ds) < 0) throw_errno("shmctl IPC_SET");
  if ((mode & SHM_LOCKED) && ::shmctl(id, SHM_LOCK, nullptr) < 0) throw_errno("shmctl SHM_LOCK");
  if (mode & SHM_DEST) removed->push_back(id);
}

void restore_sem(const json& entry) {
  int id = entry.at("id");
  auto key = static_cast<key_t>(entry.at("key").get<int64_t>());
  std::vector<unsigned short> values = entry.at("values");
  set_next_id("sem", id);
  int got =
      ::semget(key, static_cast<int>(values.size()),
               IPC_CREAT | IPC_EXCL | static_cast<int>(entry.at("mode").get<unsigned>() & 0777));
  check_created_id("System V semaphore set", id, got);
  SemArg arg;
  arg.array = values.data();
  if (::semctl(id, 0, SETALL, arg) < 0) throw_errno("semctl SETALL");
  semid_ds ds{};
  arg.buf = &ds;
  if (::semctl(id, 0, IPC_STAT, arg) < 0) throw_errno("semctl IPC_STAT");
  fill_perm(ds.sem_perm, entry);
  if (::semctl(id, 0, IPC_SET, arg) < 0) throw_errno("semctl IPC_SET");
}

void restore_msg(const json& entry) {
  int id = entry.at("id");
  auto key = static_cast<key_t>(entry.at("key").get<int64_t>());
  set_next_id("msg", id);
  int got = ::msgget(
      key, IPC_CREAT | IPC_EXCL | static_cast<int>(entry.at("mode").get<unsigned>() & 0777));
  check_created_id("System V message queue", id, got);
  msqid_ds ds{};
  if (::msgctl(id, IPC_STAT, &ds) < 0) throw_errno("msgctl IPC_STAT");
  fill_perm(ds.msg_perm, entry);
  ds.msg_qbytes = entry.at("qbytes");
  if (::msgctl(id, IPC_SET, &ds) < 0) throw_errno("msgctl IPC_SET");
  std::vector<char> buffer;
  for (const json& message : entry.at("messages")) {
    std::vector<uint8_t> data = base64_decode(message.at("data"));
    long type = message.at("type");
    buffer.resize(sizeof(long) + data.size());
    std::memcpy(buffer.data(), &type, sizeof type);
    std::memcpy(buffer.data() + sizeof(long), data.data(), data.size());
    if (::msgsnd(id, buffer.data(), data.size(), IPC_NOWAIT) < 0) throw_errno("msgsnd");
  }
}

void restore_mqueue(const json& entry) {
  std::string name = "/" + entry.at("name").get<std::string>();
  mq_attr attr{};
  attr.mq_maxmsg = entry.at("maxmsg");
  attr.mq_msgsize = entry.at("msgsize");
  unsigned mode = entry.at("mode");
  mqd_t queue = ::mq_open(name.c_str(), O_CREAT | O_EXCL | O_RDWR | O_NONBLOCK | O_CLOEXEC,
                          static_cast<mode_t>(mode), &attr);
  if (queue < 0) throw_errno("mq_open");
  UniqueFd owner(queue);
  // mq_open applied our umask.
  if (::fchmod(queue, static_cast<mode_t>(mode)) < 0) throw_errno("fchmod");
  if (::fchown(queue, entry.at("uid"), entry.at("gid")) < 0) throw_errno("fchown");
  for (const json& message : entry.at("messages")) {
    std::vector<uint8_t> data = base64_decode(message.at("data"));
    if (::mq_send(queue, reinterpret_cast<const char*>(data.data()), data.size(),
                  message.at("priority")) < 0)
      throw_errno("mq_send");
  }
}

}  // namespace

bool has_own_ipc_namespace(pid_t pid) {
  return ns_link(std::to_string(pid)) != fs::read_link("/proc/thread-self/ns/ipc");
}

namespace {

// A child that only waits to be killed: forked without CLONE_SYSVSEM, it has no undo list.
class ProcessWithoutUndoList {
 public:
  ProcessWithoutUndoList() : pid_(::fork()) {
    if (pid_ < 0) throw_errno("fork a process to compare semaphore undo lists with");
    if (pid_ == 0)
      for (;;) ::pause();
  }
  ~ProcessWithoutUndoList() {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  ProcessWithoutUndoList(const ProcessWithoutUndoList&) = delete;
  ProcessWithoutUndoList& operator=(const ProcessWithoutUndoList&) = delete;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_;
};

}  // namespace

std::vector<pid_t> processes_with_semaphore_undo_lists(const std::vector<pid_t>& pids) {
  std::vector<pid_t> found;
  if (pids.empty()) return found;
  ProcessWithoutUndoList reference;
  for (pid_t pid : pids) {
    long r = ::syscall(SYS_kcmp, pid, reference.pid(), KCMP_SYSVSEM, 0, 0);
    if (r < 0) throw_errno("pid " + std::to_string(pid) + ": kcmp KCMP_SYSVSEM");
    if (r != 0) found.push_back(pid);
  }
  return found;
}

void dump_ipc_namespace(pid_t root, const std::vector<pid_t>& tree, ImageSink& sink) {
  std::string root_ns = ns_link(std::to_string(root));
  for (pid_t pid : tree)
    if (ns_link(std::to_string(pid)) != root_ns)
      throw Error("not supported yet: pid " + std::to_string(pid) +
                  " is in another IPC namespace than the tree's root " + std::to_string(root));
  bool semaphore_sets = false;
  if (has_own_ipc_namespace(root)) {
    with_context("dumping the IPC namespace of pid " + std::to_string(root), [&] {
      UniqueFd target =
          fs::open_or_throw("/proc/" + std::to_string(root) + "/ns/ipc", O_RDONLY | O_CLOEXEC);
      IpcNamespaceSwitch in_tree_namespace(target.get());
      json image;
      image["sysctls"] = dump_sysctls();
      image["shm"] = dump_shm(sink);
      image["sem"] = dump_sem();
      image["msg"] = dump_msg();
      image["mqueues"] = dump_mqueues();
      semaphore_sets = !image["sem"].empty();
      write_json_image(sink, kIpcNamespaceImage, image);
    });
  } else {
    semaphore_sets = !dump_sem().empty();
  }
  // Undo values cannot be read (ipc.h): the restored process has none. Applying them to find
  // them out (unshare(CLONE_SYSVSEM) in the process) would run the operations of processes
  // waiting on those semaphores, so they are left alone and the loss is said. They belong to
  // semaphore sets (removing a set frees its undo values): without a set there are none, and
  // the comparison, which forks a process, is not needed.
  if (!semaphore_sets) return;
  for (pid_t pid : processes_with_semaphore_undo_lists(tree)) {
    LOG_WARN << "pid " << pid
             << " has System V semaphore undo values (SEM_UNDO): the kernel does not expose "
                "them, so they are not restored (the restored process has none)";
  }
}

std::unique_ptr<IpcNamespaceRestore> IpcNamespaceRestore::create(const std::string& image_dir,
                                                                 bool use_current_namespace) {
  if (!fs::exists(image_dir + "/" + kIpcNamespaceImage)) return nullptr;
  json image = read_json_image(image_dir, kIpcNamespaceImage);
  std::unique_ptr<IpcNamespaceRestore> restore(new IpcNamespaceRestore);
  with_context("restoring the IPC namespace", [&] {
    if (!use_current_namespace) {
      restore->original_namespace_ =
          fs::open_or_throw("/proc/thread-self/ns/ipc", O_RDONLY | O_CLOEXEC);
      if (::unshare(CLONE_NEWIPC) < 0) throw_errno("unshare CLONE_NEWIPC");
    }
    for (auto& [name, value] : image.at("sysctls").items()) {
      auto current = read_proc_sys(name);
      if (!current || *current == value.get<std::string>()) continue;
      with_context("restoring sysctl " + name, [&] { write_proc_sys(name, value); });
    }
    for (const json& entry : image.at("shm"))
      with_context("System V shared memory segment " + std::to_string(entry.at("id").get<int>()),
                   [&] { restore_shm(image_dir, entry, &restore->removed_segments_); });
    for (const json& entry : image.at("sem"))
      with_context("System V semaphore set " + std::to_string(entry.at("id").get<int>()),
                   [&] { restore_sem(entry); });
    for (const json& entry : image.at("msg"))
      with_context("System V message queue " + std::to_string(entry.at("id").get<int>()),
                   [&] { restore_msg(entry); });
    for (const json& entry : image.at("mqueues"))
      with_context("POSIX message queue /" + entry.at("name").get<std::string>(),
                   [&] { restore_mqueue(entry); });
  });
  return restore;
}

IpcNamespaceRestore::~IpcNamespaceRestore() {
  if (original_namespace_ && ::setns(original_namespace_.get(), CLONE_NEWIPC) < 0) {
    LOG_ERROR << "cannot return to the restorer's IPC namespace: " << std::strerror(errno);
  }
}

void IpcNamespaceRestore::after_processes_attached() {
  for (int id : removed_segments_)
    if (::shmctl(id, IPC_RMID, nullptr) < 0)
      throw_errno("removing System V shared memory segment " + std::to_string(id) +
                  " again (IPC_RMID)");
  removed_segments_.clear();
}

std::vector<SysvAttachCall> sysv_shm_attach_calls(const std::vector<Vma>& vmas, size_t first,
                                                  size_t* last) {
  const Vma& head = vmas.at(first);
  const int id = static_cast<int>(head.inode);
  const uint64_t base = head.start - head.offset;
  size_t end = first;
  while (end + 1 < vmas.size() && vmas[end + 1].kind == VmaKind::kSysvShm &&
         vmas[end + 1].inode == head.inode && vmas[end + 1].start == vmas[end].end &&
         vmas[end + 1].start - vmas[end + 1].offset == base)
    ++end;
  *last = end;
  const std::string where = "System V shared memory segment " + std::to_string(id) + " (" +
                            head.path + ") at " + RemoteAddr(head.start).hex();
  shmid_ds ds{};
  if (::shmctl(id, IPC_STAT, &ds) < 0) throw_errno(where + ": shmctl IPC_STAT");
  unsigned dumped_key = 0;
  // Removed segments (IPC_RMID while attached) have lost their key; the name keeps it.
  if (std::sscanf(head.path.c_str(), "/SYSV%x", &dumped_key) == 1 && ds.shm_perm.__key != 0 &&
      static_cast<unsigned>(ds.shm_perm.__key) != dumped_key)
    throw Error(where + ": the segment with this id has another key now (" +
                std::to_string(ds.shm_perm.__key) + ")");
  uint64_t mapped = (ds.shm_segsz + kPageSize - 1) / kPageSize * kPageSize;
  if (vmas[end].end - base > mapped)
    throw Error(where + ": the segment is smaller (" + std::to_string(ds.shm_segsz) +
                " bytes) than its dumped mappings");
  // May-write and may-exec (VmFlags mw, me) are those of the original attachment.
  bool may_write = head.has_flag("mw"), may_exec = head.has_flag("me");
  int flags = SHM_REMAP | (may_write ? 0 : SHM_RDONLY) | (may_exec ? SHM_EXEC : 0);
  int attached_prot = PROT_READ | (may_write ? PROT_WRITE : 0) | (may_exec ? PROT_EXEC : 0);
  std::vector<SysvAttachCall> calls;
  calls.push_back({"shmat " + where,
                   SYS_shmat,
                   {static_cast<uint64_t>(id), base, static_cast<uint64_t>(flags)},
                   true});
  if (head.start > base)
    calls.push_back({"munmap the part of " + where + " unmapped at dump",
                     SYS_munmap,
                     {base, head.start - base, 0},
                     false});
  if (vmas[end].end < base + mapped)
    calls.push_back({"munmap the tail of " + where + " unmapped at dump",
                     SYS_munmap,
                     {vmas[end].end, base + mapped - vmas[end].end, 0},
                     false});
  for (size_t i = first; i <= end; ++i)
    if (vmas[i].prot != attached_prot)
      calls.push_back({"mprotect " + where,
                       SYS_mprotect,
                       {vmas[i].start, vmas[i].size(), static_cast<uint64_t>(vmas[i].prot)},
                       false});
  return calls;
}

}  // namespace cryo::ckpt
