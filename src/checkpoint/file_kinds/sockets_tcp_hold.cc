#include "checkpoint/file_kinds/sockets_tcp_hold.h"

#include <linux/sockios.h>
#include <nftables/libnftables.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <thread>

#include "checkpoint/image/image_file.h"
#include "common/error.h"
#include "common/log.h"

namespace cryo::ckpt::files::sockets {

namespace {

UniqueFd netns_of_socket(int socket_fd) {
  int ns = ::ioctl(socket_fd, SIOCGSKNS);
  if (ns < 0) throw_errno("ioctl SIOCGSKNS");
  return UniqueFd(ns);
}

struct stat stat_of(int fd, const char* what) {
  struct stat st {};
  if (::fstat(fd, &st) < 0) throw_errno(std::string("fstat ") + what);
  return st;
}

// Runs nft `commands` (one transaction) through `ctx`, whose netlink socket already lives in the
// right network namespace.
void run_nft(nft_ctx* ctx, const std::string& commands, const std::string& what) {
  int rc = nft_run_cmd_from_buffer(ctx, commands.c_str());
  std::string error = rc == 0 ? "" : nft_ctx_get_error_buffer(ctx);
  while (!error.empty() && error.back() == '\n') error.pop_back();
  if (rc != 0) throw Error(what + ": nftables: " + error);
}

}  // namespace

void NftContextFree::operator()(nft_ctx* ctx) const {
  nft_ctx_free(ctx);
}

// libnftables opens its netlink socket when the context is created, in the network namespace of
// the creating thread: a thread of its own enters `netns` for that (setns of one thread leaves
// cryo's other threads where they are), and every later command of the context, from any thread,
// talks to `netns`. One context per hold: creating one costs milliseconds.
NftContext open_nft_context_in(int netns) {
  NftContext context;
  std::string failure;
  std::thread opener([&] {
    try {
      if (::setns(netns, CLONE_NEWNET) < 0) throw_errno("setns to the connections' netns");
      context.reset(nft_ctx_new(NFT_CTX_DEFAULT));
      if (!context) throw Error("nft_ctx_new failed");
      nft_ctx_buffer_output(context.get());
      nft_ctx_buffer_error(context.get());
    } catch (const std::exception& e) {
      failure = e.what();
    }
  });
  opener.join();
  if (!failure.empty()) throw Error("nftables in the connections' network namespace: " + failure);
  return context;
}

namespace {

void run_nft_in(int netns, const std::string& commands, const std::string& what) {
  NftContext context = open_nft_context_in(netns);
  run_nft(context.get(), commands, what);
}

// "ip" or "ip6" and the address as nft reads it (IPv4-mapped IPv6 addresses travel as IPv4).
std::pair<std::string, std::string> nft_address(const std::string& ip) {
  const std::string mapped = "::ffff:";
  if (ip.rfind(mapped, 0) == 0 && ip.find('.') != std::string::npos)
    return {"ip", ip.substr(mapped.size())};
  return {ip.find(':') != std::string::npos ? "ip6" : "ip", ip};
}

std::string drop_rule(const std::string& table, const std::string& chain, const std::string& from,
                      uint16_t from_port, const std::string& to, uint16_t to_port) {
  auto [family, source] = nft_address(from);
  auto destination = nft_address(to).second;
  return "add rule inet " + table + " " + chain + " " + family + " saddr " + source + " " + family +
         " daddr " + destination + " tcp sport " + std::to_string(from_port) + " tcp dport " +
         std::to_string(to_port) + " drop\n";
}

// Unique per dump: cryo's pid and a clock reading.
std::string new_table_name() {
  auto now = std::chrono::steady_clock::now().time_since_epoch();
  return "cryo_tcp_hold_" + std::to_string(::getpid()) + "_" +
         std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(now).count());
}

}  // namespace

void TcpPacketHold::hold(int socket_fd, const TcpConnection& c, ImageSink& sink) {
  auto key = std::make_tuple(c.local_ip, c.local_port, c.peer_ip, c.peer_port);
  auto reverse = std::make_tuple(c.peer_ip, c.peer_port, c.local_ip, c.local_port);
  if (held_.count(key) != 0 || held_.count(reverse) != 0) return;
  std::string commands;
  if (table_.empty()) {
    netns_ = netns_of_socket(socket_fd);
    struct stat st = stat_of(netns_.get(), "network namespace");
    std::string table = new_table_name();
    // Priority -300 (raw): before conntrack, so that held segments leave no trace there either.
    commands = "add table inet " + table + "\n" + "add chain inet " + table +
               " input { type filter hook input priority -300; policy accept; }\n" +
               "add chain inet " + table +
               " output { type filter hook output priority -300; policy accept; }\n";
    // Recorded before the table exists: a crash in between leaves a record of nothing, never a
    // table nobody knows of.
    write_json_image(sink, kTcpHoldImage,
                     json{{"table", table},
                          {"netns_dev", static_cast<uint64_t>(st.st_dev)},
                          {"netns_ino", static_cast<uint64_t>(st.st_ino)}});
    table_ = table;
    netns_dev_ = st.st_dev;
    netns_ino_ = st.st_ino;
  } else {
    UniqueFd ns = netns_of_socket(socket_fd);
    struct stat st = stat_of(ns.get(), "network namespace");
    if (st.st_dev != netns_dev_ || st.st_ino != netns_ino_)
      throw Error("not supported yet: established TCP connections in several network namespaces");
  }
  for (const char* chain : {"input", "output"}) {
    commands += drop_rule(table_, chain, c.local_ip, c.local_port, c.peer_ip, c.peer_port);
    commands += drop_rule(table_, chain, c.peer_ip, c.peer_port, c.local_ip, c.local_port);
  }
  if (!nft_) nft_ = open_nft_context_in(netns_.get());
  run_nft(nft_.get(), commands,
          "holding back the packets of TCP connection " + c.local_ip + ":" +
              std::to_string(c.local_port) + " -> " + c.peer_ip + ":" +
              std::to_string(c.peer_port));
  held_.insert(key);
}

void TcpPacketHold::release() {
  if (table_.empty()) return;
  if (!nft_) nft_ = open_nft_context_in(netns_.get());
  run_nft(nft_.get(), "delete table inet " + table_ + "\n",
          "removing the TCP packet hold " + table_);
  table_.clear();
  held_.clear();
}

TcpPacketHold::~TcpPacketHold() {
  if (kept_ || table_.empty()) return;
  try {
    release();
  } catch (const std::exception& e) {
    LOG_WARN << e.what();
  }
}

void release_recorded_hold(const std::string& image_dir, int socket_fd) {
  if (!std::filesystem::exists(std::filesystem::path(image_dir) / kTcpHoldImage)) return;
  json record = read_json_image(image_dir, kTcpHoldImage);
  auto table = record.at("table").get<std::string>();
  UniqueFd netns = netns_of_socket(socket_fd);
  struct stat st = stat_of(netns.get(), "network namespace");
  if (st.st_dev != record.at("netns_dev").get<uint64_t>() ||
      st.st_ino != record.at("netns_ino").get<uint64_t>()) {
    LOG_DEBUG << "TCP packet hold " << table << " was made in another network namespace";
    return;
  }
  std::string error;
  try {
    run_nft_in(netns.get(), "delete table inet " + table + "\n",
               "removing the TCP packet hold " + table);
  } catch (const Error& e) {
    // A second restore of the same images finds the table gone already.
    if (std::string(e.what()).find("No such file or directory") == std::string::npos) throw;
    LOG_DEBUG << "TCP packet hold " << table << " is gone already";
  }
}

}  // namespace cryo::ckpt::files::sockets
