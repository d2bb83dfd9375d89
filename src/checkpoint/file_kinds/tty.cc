// Terminals.
// - Outside terminals: with --shell-job the tree's terminal is outside it (the shell's): it is
//   recorded as "external tty" and restored onto the restoring cryo's own terminal.
// - Pseudo-terminals inside the tree (a /dev/ptmx master held by the tree, with its slave): one
//   "ptys" object per pair holds the slave's termios and window size, the bytes queued in both
//   directions, lock and packet mode, and the session it is the controlling terminal of (with its
//   foreground group). The restore opens a new pair with the same index when that index is free
//   (else the lowest free one, logged), queues the same bytes again, and the session leader takes
//   it as controlling terminal (terminals.h).
// Queued bytes cannot be peeked: the dump reads them out and, when the tree goes on running,
// injects them again (TIOCSTI: synchronous, through the line discipline with echo, signals and
// input translation turned off for the time, so that the queue ends byte for byte as it was).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "checkpoint/file_kinds/file_kind.h"
#include "checkpoint/namespaces.h"
#include "checkpoint/terminals.h"
#include "checkpoint/threads.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"

namespace cryo::ckpt {

namespace {

// The coordinator's fd on each recreated pty slave whose session is in the tree, inherited by the
// restoring processes (terminals.h).
struct RestoredTerminal {
  UniqueFd slave;
  pid_t session = 0;
  pid_t foreground = 0;
  int index = -1;
};
std::map<uint64_t, RestoredTerminal>& restored_terminals() {
  static std::map<uint64_t, RestoredTerminal> terminals;
  return terminals;
}

}  // namespace

void restore_terminal_control(pid_t pid, pid_t sid, pid_t pgid) {
  for (auto& [id, terminal] : restored_terminals()) {
    if (terminal.session == pid && sid == pid && ::ioctl(terminal.slave.get(), TIOCSCTTY, 0) < 0)
      throw_errno("taking /dev/pts/" + std::to_string(terminal.index) +
                  " as controlling terminal (TIOCSCTTY)");
    if (terminal.foreground == pgid && pgid == pid && terminal.foreground != terminal.session) {
      // A background group changing the foreground gets SIGTTOU unless it blocks it.
      sigset_t ttou, old;
      sigemptyset(&ttou);
      sigaddset(&ttou, SIGTTOU);
      ::sigprocmask(SIG_BLOCK, &ttou, &old);
      int r = ::tcsetpgrp(terminal.slave.get(), pgid);
      int err = errno;
      ::sigprocmask(SIG_SETMASK, &old, nullptr);
      if (r < 0)
        throw_errno("making group " + std::to_string(pgid) + " the foreground of /dev/pts/" +
                        std::to_string(terminal.index),
                    err);
    }
  }
}

RestoredTerminalsScope::~RestoredTerminalsScope() {
  restored_terminals().clear();
}

namespace files {

namespace {

// Linux device numbers (Documentation/admin-guide/devices.txt): 4 = virtual consoles and serial
// ports, 5:1 = console, 5:2 = ptmx, 128-135 = pty masters, 136-143 = pty slaves.
bool is_pty_master(dev_t rdev) {
  return (major(rdev) == 5 && minor(rdev) == 2) || (major(rdev) >= 128 && major(rdev) <= 135);
}

bool is_pty_slave(dev_t rdev) {
  return major(rdev) >= 136 && major(rdev) <= 143;
}

int pty_slave_index(dev_t rdev) {
  return static_cast<int>((major(rdev) - 136) * 256 + minor(rdev));
}

dev_t pty_slave_rdev(int index) {
  return makedev(136 + static_cast<unsigned>(index) / 256, static_cast<unsigned>(index) % 256);
}

bool is_terminal(dev_t rdev) {
  unsigned ma = major(rdev);
  return ma == 4 || (ma == 5 && minor(rdev) == 1) || is_pty_master(rdev) || is_pty_slave(rdev);
}

bool terminal_claims(const DumpedFd& fd) {
  return S_ISCHR(fd.st.st_mode) && !(fd.flags & O_PATH) && is_terminal(fd.st.st_rdev);
}

json termios_to_json(const termios& t) {
  std::vector<unsigned> cc(t.c_cc, t.c_cc + NCCS);
  return {{"iflag", t.c_iflag},   {"oflag", t.c_oflag},  {"cflag", t.c_cflag},
          {"lflag", t.c_lflag},   {"line", t.c_line},    {"cc", cc},
          {"ispeed", t.c_ispeed}, {"ospeed", t.c_ospeed}};
}

termios termios_from_json(const json& j) {
  termios t{};
  t.c_iflag = j.at("iflag");
  t.c_oflag = j.at("oflag");
  t.c_cflag = j.at("cflag");
  t.c_lflag = j.at("lflag");
  t.c_line = static_cast<cc_t>(j.at("line").get<unsigned>());
  std::vector<unsigned> cc = j.at("cc");
  for (size_t i = 0; i < cc.size() && i < NCCS; ++i) t.c_cc[i] = static_cast<cc_t>(cc[i]);
  t.c_ispeed = j.at("ispeed");
  t.c_ospeed = j.at("ospeed");
  return t;
}

std::string read_available(int fd) {
  std::string out;
  char buffer[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0 || !(p.revents & POLLIN)) break;
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n <= 0) break;  // EIO: the other side is closed and nothing is left
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

void inject(int fd, const std::string& bytes, const char* what) {
  for (char c : bytes)
    if (::ioctl(fd, TIOCSTI, &c) < 0) throw_errno(std::string("queueing ") + what + " (TIOCSTI)");
}

// Queues `output` for the master to read and `input` for the slave to read, as they were at
// dump time, then sets `final_termios` on the slave.
void refill_pty(int master, int slave, const std::string& output, const std::string& input,
                const termios& final_termios) {
  // The master's line discipline is raw (its termios cannot be changed from user space).
  inject(master, output, "output for the pty master");
  if (!input.empty()) {
    termios quiet = final_termios;
    quiet.c_lflag &=
        ~static_cast<tcflag_t>(ECHO | ECHOE | ECHOK | ECHONL | ECHOCTL | ECHOKE | ISIG | IEXTEN);
    quiet.c_iflag &= ~static_cast<tcflag_t>(ICRNL | INLCR | IGNCR | IUCLC | ISTRIP | IXON | IXOFF |
                                            PARMRK | INPCK);
    // Editing characters that would act on the queued bytes: moved to a byte they do not hold.
    std::set<unsigned char> used(input.begin(), input.end());
    int spare = -1;
    for (int c = 1; c < 256 && spare < 0; ++c)
      if (!used.count(static_cast<unsigned char>(c))) spare = c;
    if (spare < 0) throw Error("not supported yet: a pty input queue holding every byte value");
    for (int cc : {VERASE, VKILL, VWERASE, VREPRINT, VLNEXT, VEOF})
      quiet.c_cc[cc] = static_cast<cc_t>(spare);
    if (::tcsetattr(slave, TCSANOW, &quiet) < 0) throw_errno("tcsetattr for queued input");
    inject(slave, input, "input for the pty slave");
  }
  if (::tcsetattr(slave, TCSANOW, &final_termios) < 0) throw_errno("tcsetattr");
}

// Dump-time state of the ptys met so far: index -> object id; indexes whose master was met; the
// first slave fd of each (for messages).
struct PtyDumpState {
  std::map<int, uint64_t> objects;
  std::set<int> masters;
  std::map<int, std::string> first_slave_fd;
};

PtyDumpState& pty_state(DumpContext& ctx) {
  bool created = false;
  auto& state = ctx.kind_state<PtyDumpState>("pty", &created);
  if (created)
    ctx.add_finish_check([&state] {
      for (auto& [i, object_id] : state.objects)
        if (!state.masters.count(i))
          throw Error(state.first_slave_fd[i] + ": the terminal /dev/pts/" + std::to_string(i) +
                      " is outside the checkpointed tree (its master is): checkpoint it as a "
                      "shell job (--shell-job)");
    });
  return state;
}

json& pty_object(DumpContext& ctx, int index, uint64_t* id) {
  auto object = ctx.object("ptys", 0, static_cast<uint64_t>(index));
  if (object.created) {
    (*object.entry)["index"] = index;
    (*object.entry)["session"] = 0;
    (*object.entry)["foreground"] = 0;
    pty_state(ctx).objects[index] = object.id;
  }
  *id = object.id;
  return *object.entry;
}

// When the holder's controlling terminal is this pty: its session and foreground group, as the
// images name processes.
void record_controlling_session(const DumpedFd& fd, int index, json& entry) {
  std::string stat = fs::read_file("/proc/" + std::to_string(fd.pid) + "/stat");
  std::istringstream fields(stat.substr(stat.rfind(')') + 2));
  std::string state;
  long ppid = 0, pgrp = 0, session = 0, tty_nr = 0, tpgid = 0;
  fields >> state >> ppid >> pgrp >> session >> tty_nr >> tpgid;
  if (static_cast<dev_t>(tty_nr) != pty_slave_rdev(index) || session <= 0) return;
  with_context("session " + std::to_string(session) + " of the controlling terminal /dev/pts/" +
                   std::to_string(index),
               [&] {
                 entry["session"] = innermost_pid(static_cast<pid_t>(session));
                 entry["foreground"] = tpgid > 0 ? innermost_pid(static_cast<pid_t>(tpgid)) : 0;
               });
}

void dump_pty_master(DumpContext& ctx, const DumpedFd& fd, json& description) {
  int index = -1;
  if (::ioctl(fd.stolen, TIOCGPTN, &index) < 0) throw_errno(fd.describe() + ": TIOCGPTN");
  uint64_t id = 0;
  json& entry = pty_object(ctx, index, &id);
  auto& state = pty_state(ctx);
  if (!state.masters.insert(index).second)
    throw Error(fd.describe() + ": a second master of /dev/pts/" + std::to_string(index));
  int locked = 0, packet = 0;
  if (::ioctl(fd.stolen, TIOCGPTLCK, &locked) < 0) throw_errno("TIOCGPTLCK");
  if (::ioctl(fd.stolen, TIOCGPKT, &packet) < 0) throw_errno("TIOCGPKT");
  winsize size{};
  if (::ioctl(fd.stolen, TIOCGWINSZ, &size) < 0) throw_errno("TIOCGWINSZ");
  // Termios ioctls on the master act on the slave's settings.
  termios settings{};
  if (::tcgetattr(fd.stolen, &settings) < 0) throw_errno("tcgetattr");

  auto master = std::make_shared<UniqueFd>(::fcntl(fd.stolen, F_DUPFD_CLOEXEC, 0));
  if (!*master) throw_errno("dup");
  std::string output = read_available(master->get());
  std::string input;
  std::shared_ptr<UniqueFd> slave;
  if (!locked) {
    // Our own slave description, non-blocking; in non-canonical mode every queued byte is
    // readable, partial lines too.
    slave = std::make_shared<UniqueFd>(
        ::ioctl(master->get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC));
    if (!*slave) throw_errno(fd.describe() + ": TIOCGPTPEER");
    termios drain = settings;
    drain.c_lflag &= ~static_cast<tcflag_t>(ICANON);
    drain.c_cc[VMIN] = 0;
    drain.c_cc[VTIME] = 0;
    if (::tcsetattr(slave->get(), TCSANOW, &drain) < 0) throw_errno("tcsetattr");
    input = read_available(slave->get());
    if (::tcsetattr(slave->get(), TCSANOW, &settings) < 0) throw_errno("tcsetattr");
  } else if (!output.empty()) {
    throw Error("not supported yet: " + fd.describe() + ": a locked pty with queued output");
  }
  if (!output.empty() || !input.empty()) {
    ctx.add_resume_action([master, slave, output, input, settings] {
      refill_pty(master->get(), slave->get(), output, input, settings);
    });
  }
  entry["master_path"] = fd.link;
  entry["locked"] = locked != 0;
  entry["packet"] = packet != 0;
  entry["winsize"] = {size.ws_row, size.ws_col, size.ws_xpixel, size.ws_ypixel};
  entry["termios"] = termios_to_json(settings);
  entry["output"] = base64_encode(output.data(), output.size());
  entry["input"] = base64_encode(input.data(), input.size());
  record_controlling_session(fd, index, entry);
  description["kind"] = "pty-master";
  description["pty"] = id;
}

void dump_pty_slave(DumpContext& ctx, const DumpedFd& fd, json& description) {
  int index = pty_slave_index(fd.st.st_rdev);
  uint64_t id = 0;
  json& entry = pty_object(ctx, index, &id);
  pty_state(ctx).first_slave_fd.try_emplace(index, fd.describe());
  record_controlling_session(fd, index, entry);
  description["kind"] = "pty-slave";
  description["pty"] = id;
}

void terminal_dump(DumpContext& ctx, const DumpedFd& fd, json& description) {
  if (is_pty_master(fd.st.st_rdev)) return dump_pty_master(ctx, fd, description);
  // A slave is the tree's own unless it is the shell job's terminal: with --shell-job, only a
  // slave whose master was met before (in an earlier process or a lower fd) is taken as inside.
  if (is_pty_slave(fd.st.st_rdev) &&
      (!ctx.options().shell_job || pty_state(ctx).masters.count(pty_slave_index(fd.st.st_rdev))))
    return dump_pty_slave(ctx, fd, description);
  if (!ctx.options().shell_job)
    throw Error("the terminal " + fd.link +
                " is outside the checkpointed tree: checkpoint it as a shell job (--shell-job)");
  auto object = ctx.object("terminals", fd.st.st_rdev, 0);
  if (object.created) {
    if (ctx.object_count("terminals") > 1)
      throw Error("not supported yet: more than one outside terminal (" + fd.link + ")");
    (*object.entry)["rdev"] = static_cast<uint64_t>(fd.st.st_rdev);
  }
  description["kind"] = "external-tty";
  description["terminal"] = object.id;
}

UniqueFd terminal_open(RestoreContext& ctx, const json& description) {
  const FileRestoreOptions& options = ctx.options();
  if (!options.shell_job)
    throw Error(
        "the tree was dumped with its outside terminal: restore it as a shell job "
        "(--shell-job)");
  int source = options.inherit_tty_fd;
  if (source < 0) {
    if (!::isatty(0)) throw Error("--shell-job: the restoring cryo's stdin is not a terminal");
    source = 0;
  } else if (!::isatty(source)) {
    throw_errno("--shell-job: fd " + std::to_string(source) + " is not a terminal");
  }
  // A description of our own on the same terminal: its flags (O_NONBLOCK...) are the tree's and
  // do not change cryo's.
  return reopen_fd(source, description.at("flags").get<int>());
}

// A new master on `path` (the dumped tree's ptmx) with index `wanted` if it is free: devpts hands
// out the lowest free index, so the masters opened on the way are held until it comes (at most
// `wanted` of them, unless other processes free indexes meanwhile: then the index we got is used).
UniqueFd open_master_at(RestoreContext& ctx, const std::string& path, int wanted, int* index) {
  std::vector<UniqueFd> below;
  for (;;) {
    UniqueFd master = ctx.open_path(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (::ioctl(master.get(), TIOCGPTN, index) < 0) throw_errno("TIOCGPTN");
    if (*index >= wanted || below.size() > static_cast<size_t>(wanted)) return master;
    below.push_back(std::move(master));
  }
}

// The pair of pty object `id`, created by the first of its descriptions: slot 0 of the object
// fds is the master, slot 1 a slave description of our own.
int pty_master_for(RestoreContext& ctx, uint64_t id) {
  if (int master = ctx.object_fd(id, 0); master >= 0) return master;
  const json& pty = ctx.object("ptys", id);
  if (!pty.contains("master_path"))
    throw Error("pty object " + std::to_string(id) + " has no master");
  int wanted = pty.at("index");
  int index = -1;
  UniqueFd master = open_master_at(ctx, pty.at("master_path"), wanted, &index);
  if (index != wanted) {
    LOG_WARN << "/dev/pts/" << wanted << " is taken: the tree's pty is restored as /dev/pts/"
             << index;
  }
  int unlock = 0;
  if (::ioctl(master.get(), TIOCSPTLCK, &unlock) < 0) throw_errno("unlockpt");
  UniqueFd slave(::ioctl(master.get(), TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (!slave) throw_errno("TIOCGPTPEER");
  const json& size_json = pty.at("winsize");
  winsize size{size_json.at(0), size_json.at(1), size_json.at(2), size_json.at(3)};
  if (::ioctl(master.get(), TIOCSWINSZ, &size) < 0) throw_errno("TIOCSWINSZ");
  int packet = pty.at("packet").get<bool>() ? 1 : 0;
  if (packet && ::ioctl(master.get(), TIOCPKT, &packet) < 0) throw_errno("TIOCPKT");
  std::vector<uint8_t> output = base64_decode(pty.at("output"));
  std::vector<uint8_t> input = base64_decode(pty.at("input"));
  refill_pty(master.get(), slave.get(), std::string(output.begin(), output.end()),
             std::string(input.begin(), input.end()), termios_from_json(pty.at("termios")));
  if (pty.at("locked").get<bool>()) {
    // Locked again once the tree's slave descriptions are open.
    int fd = master.get();
    ctx.add_after_open([fd] {
      int lock = 1;
      if (::ioctl(fd, TIOCSPTLCK, &lock) < 0) throw_errno("locking the pty again");
    });
  }
  pid_t session = pty.at("session");
  if (session > 0) {
    RestoredTerminal& terminal = restored_terminals()[id];
    terminal.slave.reset(::fcntl(slave.get(), F_DUPFD_CLOEXEC, 0));
    if (!terminal.slave) throw_errno("dup");
    terminal.session = session;
    terminal.foreground = pty.at("foreground");
    terminal.index = index;
  }
  int fd = master.get();
  ctx.set_object_fd(id, std::move(master), 0);
  ctx.set_object_fd(id, std::move(slave), 1);
  return fd;
}

void set_status_flags(int fd, int dumped_flags) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) throw_errno("fcntl F_GETFL");
  flags = (flags & ~(O_NONBLOCK | O_APPEND | O_ASYNC)) |
          (dumped_flags & (O_NONBLOCK | O_APPEND | O_ASYNC));
  if (::fcntl(fd, F_SETFL, flags) < 0) throw_errno("fcntl F_SETFL");
}

UniqueFd pty_master_open(RestoreContext& ctx, const json& description) {
  int master = pty_master_for(ctx, description.at("pty"));
  // The one description of this master (a pty has one): the object fd goes when the pool drops
  // the object fds.
  UniqueFd fd(::fcntl(master, F_DUPFD_CLOEXEC, 0));
  if (!fd) throw_errno("dup");
  set_status_flags(fd.get(), description.at("flags"));
  return fd;
}

UniqueFd pty_slave_open(RestoreContext& ctx, const json& description) {
  int master = pty_master_for(ctx, description.at("pty"));
  int flags = description.at("flags").get<int>();
  UniqueFd fd(::ioctl(master, TIOCGPTPEER,
                      (flags & (O_ACCMODE | O_NONBLOCK | O_APPEND)) | O_NOCTTY | O_CLOEXEC));
  if (!fd) throw_errno("TIOCGPTPEER");
  return fd;
}

UniqueFd any_terminal_open(RestoreContext& ctx, const json& description) {
  const std::string kind = description.at("kind");
  if (kind == "pty-master") return pty_master_open(ctx, description);
  if (kind == "pty-slave") return pty_slave_open(ctx, description);
  return terminal_open(ctx, description);
}

}  // namespace

const FileKind kTerminalKind{
    {"external-tty", "pty-master", "pty-slave"}, terminal_claims, terminal_dump, any_terminal_open};

}  // namespace files

}  // namespace cryo::ckpt
