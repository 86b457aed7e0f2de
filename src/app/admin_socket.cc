#include "app/admin_socket.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/write.hpp>
#include <future>
#include <nlohmann/json.hpp>

namespace mmchat::app {
namespace {

using Local = boost::asio::local::stream_protocol;
constexpr size_t kMaxLine = 64 * 1024;
constexpr auto kSessionTimeout = std::chrono::seconds(10);

bool PositiveId(const nlohmann::json& j) { return j.is_number_integer() && j.get<int64_t>() > 0; }

// Whether something answers on the socket file at `path`.
bool Answers(const std::string& path) {
  boost::asio::io_context ioc;
  Local::socket s(ioc);
  boost::system::error_code ec;
  s.connect(Local::endpoint(path), ec);
  return !ec;
}

}  // namespace

std::string FormatAdminNews(const AdminNews& news) {
  nlohmann::json j = nlohmann::json::object();
  if (news.tokens_revoked) j["tokens_revoked"] = *news.tokens_revoked;
  if (news.user_changed) j["user_changed"] = *news.user_changed;
  if (!news.left.empty()) {
    j["user"] = news.user;
    j["left"] = news.left;
  }
  return j.dump();
}

Result<AdminNews> ParseAdminNews(std::string_view line) {
  const Status bad = Status::InvalidRequest("expected one JSON object of known news");
  auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.empty()) return bad;
  AdminNews news;
  for (const auto& [key, value] : j.items()) {
    if (key == "tokens_revoked" && PositiveId(value)) {
      news.tokens_revoked = value.get<int64_t>();
    } else if (key == "user_changed" && PositiveId(value)) {
      news.user_changed = value.get<int64_t>();
    } else if (key == "user" && PositiveId(value)) {
      news.user = value.get<int64_t>();
    } else if (key == "left" && value.is_array()) {
      for (const auto& c : value) {
        if (!PositiveId(c)) return bad;
        news.left.push_back(c.get<int64_t>());
      }
    } else {
      return bad;
    }
  }
  if (!news.left.empty() && news.user == 0) return bad;
  return news;
}

// One connection: reads a line, runs the handler on the workers, answers a line, closes.
class AdminSocket::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Local::socket socket, AdminSocket* owner)
      : socket_(std::move(socket)), timer_(socket_.get_executor()), buf_(kMaxLine), owner_(owner) {}

  void Start() {
    timer_.expires_after(kSessionTimeout);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (!ec) self->Close();
    });
    boost::asio::async_read_until(socket_, buf_, '\n',
                                  [self = shared_from_this()](const boost::system::error_code& ec,
                                                              size_t n) { self->OnLine(ec, n); });
  }

  // From any thread.
  void Close() {
    boost::asio::post(socket_.get_executor(), [self = shared_from_this()] {
      boost::system::error_code ignored;
      self->socket_.close(ignored);
      self->timer_.cancel();
    });
  }

 private:
  void OnLine(const boost::system::error_code& ec, size_t n) {
    if (ec) {
      Close();
      return;
    }
    std::string line(boost::asio::buffers_begin(buf_.data()),
                     boost::asio::buffers_begin(buf_.data()) + static_cast<std::ptrdiff_t>(n - 1));
    boost::asio::post(owner_->work_, [self = shared_from_this(), line = std::move(line)] {
      auto news = ParseAdminNews(line);
      Status s = news.ok() ? self->owner_->handler_(*news) : news.status();
      if (s.ok()) {
        spdlog::info("admin socket: applied {}", line);
      } else {
        spdlog::warn("admin socket: {}", s.message());
      }
      nlohmann::json answer = {{"ok", s.ok()}};
      if (!s.ok()) answer["error"] = s.message();
      self->Answer(answer.dump() + "\n");
    });
  }

  void Answer(std::string text) {
    boost::asio::post(socket_.get_executor(), [self = shared_from_this(),
                                               text = std::move(text)]() mutable {
      self->answer_ = std::move(text);
      boost::asio::async_write(self->socket_, boost::asio::buffer(self->answer_),
                               [self](const boost::system::error_code&, size_t) { self->Close(); });
    });
  }

  Local::socket socket_;
  boost::asio::steady_timer timer_;
  boost::asio::streambuf buf_;
  std::string answer_;
  AdminSocket* owner_;
};

AdminSocket::AdminSocket(boost::asio::io_context& ioc, boost::asio::any_io_executor work,
                         Handler handler)
    : ioc_(ioc), work_(std::move(work)), handler_(std::move(handler)), acceptor_(ioc) {}

AdminSocket::~AdminSocket() { Stop(); }

bool AdminSocket::Listen(const std::string& path) {
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      spdlog::warn("admin socket: {} exists and is not a socket; serving without one", path);
      return false;
    }
    if (Answers(path)) {
      spdlog::warn("admin socket: another server answers on {}; serving without one", path);
      return false;
    }
    ::unlink(path.c_str());  // left by a server that is gone
  }
  boost::system::error_code ec;
  // Made 0600 from the start: nobody else may connect even for a moment.
  const mode_t old_mask = ::umask(0177);
  acceptor_.open(Local(), ec);
  if (!ec) acceptor_.bind(Local::endpoint(path), ec);
  ::umask(old_mask);
  if (!ec) acceptor_.listen(boost::asio::socket_base::max_listen_connections, ec);
  if (!ec && ::chmod(path.c_str(), 0600) != 0) {
    ec = boost::system::error_code(errno, boost::system::system_category());
  }
  if (ec) {
    spdlog::warn("admin socket: cannot listen on {}: {}; serving without one", path, ec.message());
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    return false;
  }
  if (lstat(path.c_str(), &st) == 0) inode_ = st.st_ino;
  path_ = path;
  spdlog::info("admin socket listening on {}", path);
  return true;
}

void AdminSocket::Start() {
  if (!path_.empty()) boost::asio::post(ioc_, [this] { Accept(); });
}

void AdminSocket::Accept() {
  // Each connection on a strand of its own: its timer and its answer come from other threads.
  acceptor_.async_accept(boost::asio::make_strand(ioc_),
                         [this](const boost::system::error_code& ec, Local::socket socket) {
                           if (ec || stopped_) return;
                           auto session = std::make_shared<Session>(std::move(socket), this);
                           {
                             std::lock_guard lock(mu_);
                             std::erase_if(sessions_, [](const auto& w) { return w.expired(); });
                             sessions_.push_back(session);
                           }
                           session->Start();
                           Accept();
                         });
}

void AdminSocket::Stop() {
  if (stopped_.exchange(true) || path_.empty()) return;
  auto closed = std::make_shared<std::promise<void>>();
  auto done = closed->get_future();
  boost::asio::post(ioc_, [this, closed] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    closed->set_value();
  });
  // The io threads may already be gone: then nothing else touches the acceptor.
  if (done.wait_for(std::chrono::seconds(2)) != std::future_status::ready) {
    spdlog::warn("admin socket: not closed in time");
  }
  {
    std::lock_guard lock(mu_);
    for (auto& w : sessions_) {
      if (auto s = w.lock()) s->Close();
    }
    sessions_.clear();
  }
  struct stat st {};
  if (lstat(path_.c_str(), &st) == 0 && st.st_ino == inode_) ::unlink(path_.c_str());
}

Result<bool> TellServer(const std::string& path, const AdminNews& news,
                        std::chrono::milliseconds timeout) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) return false;
  boost::asio::io_context ioc;
  Local::socket s(ioc);
  boost::system::error_code ec;
  s.connect(Local::endpoint(path), ec);
  if (ec) return false;  // a file left by a server that is gone
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  boost::asio::write(s, boost::asio::buffer(FormatAdminNews(news) + "\n"), ec);
  if (ec) return Status::Unavailable("the server at " + path + " did not listen: " + ec.message());
  boost::asio::streambuf buf(kMaxLine);
  const size_t n = boost::asio::read_until(s, buf, '\n', ec);
  if (ec) return Status::Unavailable("the server at " + path + " did not answer: " + ec.message());
  const std::string line(boost::asio::buffers_begin(buf.data()),
                         boost::asio::buffers_begin(buf.data()) + static_cast<std::ptrdiff_t>(n));
  auto answer = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (answer.is_object() && answer.value("ok", false)) return true;
  std::string why = "no valid answer";
  if (answer.is_object() && answer.contains("error") && answer["error"].is_string()) {
    why = answer["error"].get<std::string>();
  }
  return Status::Unavailable("the server at " + path + " refused the news: " + why);
}

}  // namespace mmchat::app
