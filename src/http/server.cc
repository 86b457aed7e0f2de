#include "http/server.h"

#include <spdlog/spdlog.h>

#include <array>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <cmath>
#include <future>
#include <limits>
#include <optional>
#include <vector>

#include "common/log_context.h"
#include "http/errors.h"
#include "http/request_id.h"
#include "wire/errors.h"

namespace mmchat::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
using tcp = net::ip::tcp;

namespace {

// The request line and the headers handlers read.
Request FromHeader(const bhttp::request_header<>& msg) {
  Request req;
  req.method = std::string(msg.method_string());
  const std::string_view target = msg.target();
  const size_t q = target.find('?');
  req.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) req.query = ParseQuery(target.substr(q + 1));
  req.authorization = std::string(msg[bhttp::field::authorization]);
  req.content_type = std::string(msg[bhttp::field::content_type]);
  req.range = std::string(msg[bhttp::field::range]);
  req.if_none_match = std::string(msg[bhttp::field::if_none_match]);
  return req;
}

// The access log's logger (app/logging.h), or the default one where nobody made it.
spdlog::logger& AccessLogger() {
  static const std::shared_ptr<spdlog::logger> access =
      spdlog::get(std::string(log::kAccessLogger));
  return access ? *access : *spdlog::default_logger_raw();
}

// The pieces a streamed upload is read in: two in memory per upload (one read while the
// other is stored).
constexpr size_t kUploadPieceBytes = 256 * 1024;
// The socket reads of an upload.
constexpr size_t kUploadReadBytes = 64 * 1024;
// How much of a refused upload's body is read and dropped before the connection closes.
constexpr size_t kLingerBytes = 4 * 1024 * 1024;
constexpr std::chrono::seconds kLingerTime{2};

}  // namespace

Request ToRequest(bhttp::request<bhttp::string_body>& msg) {
  Request req = FromHeader(msg.base());
  req.body = std::move(msg.body());
  return req;
}

// ---------------------------------------------------------------------------------------------
// Session: one connection
// ---------------------------------------------------------------------------------------------

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket&& socket, Server* server, ConnectionLimits::Lease lease)
      : stream_(std::move(socket)),
        server_(server),
        lease_(std::move(lease)),
        client_address_(lease_.address().to_string()) {}
  ~Session() { server_->Unregister(this); }

  void Start() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->ReadHeader(); });
  }

  // When the server stops: idle connections close now, busy ones after their response.
  void Shutdown() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      self->stopping_ = true;
      if (self->reading_) self->Close();  // idle or mid-read: drop it
    });
  }

  // After the grace period: close whatever it is doing; pending operations end at once.
  void Abort() {
    net::dispatch(stream_.get_executor(), [self = shared_from_this()] {
      self->stopping_ = true;
      self->Close();
    });
  }

 private:
  void ReadHeader() {
    if (stopping_) return Close();
    request_id_.clear();  // the next request's, once its headers are in
    route_ = {};
    // The headers first, with no body type yet: an upload's body is streamed, any other
    // is read whole (OnHeader picks).
    origin_.clear();
    header_parser_.emplace();
    header_parser_->header_limit(static_cast<uint32_t>(server_->options_.header_limit));
    // Which body limit applies is known only once the route is: OnHeader checks it.
    // (Not boost::none: Beast 1.74 compares a Content-Length with it, and loses.)
    header_parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    reading_ = true;
    stream_.expires_after(server_->options_.read_timeout);
    bhttp::async_read_header(
        stream_, buffer_, *header_parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnHeader(ec); });
  }

  void OnHeader(beast::error_code ec) {
    if (ec) return OnReadError(ec);
    {
      auto& head = header_parser_->get();
      BeginRequest(head);
      // The byte limit bounds memory; this bounds the work of many tiny headers.
      if (static_cast<size_t>(std::distance(head.begin(), head.end())) >
          server_->options_.max_headers) {
        reading_ = false;
        return WriteError(Status::InvalidRequest("too many request headers"), 431);
      }
      origin_ = std::string(head[bhttp::field::origin]);
      Request req = FromHeader(head);
      if (const Route* route = server_->dispatcher_->StreamedRoute(req)) {
        return BeginUpload(*route, std::move(req));
      }
    }
    // Beast compares a Content-Length with the limit only while parsing the headers, and a
    // chunked body as it arrives (with the limit set now).
    if (auto length = header_parser_->content_length();
        length && *length > server_->options_.body_limit) {
      reading_ = false;
      return WriteError(BodyTooLarge());
    }
    parser_.emplace(std::move(*header_parser_));
    header_parser_.reset();
    parser_->body_limit(server_->options_.body_limit);
    auto& req = parser_->get();
    if (beast::iequals(req[bhttp::field::expect], "100-continue") && !parser_->is_done()) {
      auto cont = std::make_shared<bhttp::response<bhttp::empty_body>>(bhttp::status::continue_,
                                                                       req.version());
      bhttp::async_write(stream_, *cont,
                         [self = shared_from_this(), cont](beast::error_code ec2, size_t) {
                           if (ec2) return self->Close();
                           self->ReadBody();
                         });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    if (parser_->is_done()) return Handle();
    // The deadline set in ReadHeader covers the whole request, body included.
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = shared_from_this()](beast::error_code ec, size_t) {
                        if (ec) return self->OnReadError(ec);
                        self->Handle();
                      });
  }

  void OnReadError(beast::error_code ec) {
    reading_ = false;
    if (ec == bhttp::error::body_limit) {
      return WriteError(BodyTooLarge());
    }
    if (ec == bhttp::error::header_limit) {
      return WriteError(Status::InvalidRequest("request headers too large"), 431);
    }
    if (ec == bhttp::error::end_of_stream || ec == net::error::eof ||
        ec == net::error::operation_aborted || ec == beast::error::timeout ||
        ec == net::error::connection_reset || ec == net::error::bad_descriptor ||
        ec == bhttp::error::partial_message) {
      return Close();  // the client left, went quiet, or we are stopping: normal endings
    }
    // Anything else is a malformed request; say so and close, as the stream is unusable.
    WriteError(Status::InvalidRequest("malformed HTTP request"));
  }

  void Handle() {
    reading_ = false;
    // Closed (Shutdown, Abort) while this request's read was completing: it could no longer
    // be answered, so it must not be acted on either (a message stored, its sender never told).
    if (!stream_.socket().is_open()) return;
    stream_.expires_never();  // our own handling time is not the client's fault
    auto& msg = parser_->get();
    keep_alive_ = msg.keep_alive();
    version_ = msg.version();

    if (const CorsPolicy* cors = server_->options_.cors) {
      if (auto preflight = cors->Preflight(msg.method_string(), origin_,
                                           msg[bhttp::field::access_control_request_method])) {
        return Write(std::move(*preflight), false);
      }
    }
    Request req = ToRequest(msg);
    req.client_address = client_address_;
    req.request_id = request_id_;
    UpgradeHandler* upgrader = server_->upgrader_;
    if (upgrader != nullptr && req.path == upgrader->path()) return Upgrade(*upgrader, req);

    server_->dispatcher_->Dispatch(std::move(req), [self = shared_from_this()](Response res) {
      // May run on a worker thread: hop back to this connection's strand.
      net::post(self->stream_.get_executor(),
                [self, res = std::move(res)]() mutable { self->Write(std::move(res), false); });
    });
  }

  // ---- Uploads: the body streamed into a BodySink, one piece at a time --------------------

  void BeginUpload(const Route& route, Request req) {
    reading_ = false;
    stream_.expires_never();  // authentication and the sink's start are not the client's time
    upload_route_ = &route;
    upload_start_ = std::chrono::steady_clock::now();
    keep_alive_ = header_parser_->get().keep_alive();
    version_ = header_parser_->get().version();
    if (auto length = header_parser_->content_length()) req.content_length = *length;
    req.client_address = client_address_;
    req.request_id = request_id_;
    route_ = server_->dispatcher_->Label(route);
    server_->dispatcher_->OpenSink(
        route, std::move(req),
        [self = shared_from_this()](std::shared_ptr<BodySink> sink, Response error) {
          net::post(self->stream_.get_executor(),
                    [self, sink = std::move(sink), error = std::move(error)]() mutable {
                      self->OnSinkOpened(std::move(sink), std::move(error));
                    });
        });
  }

  void OnSinkOpened(std::shared_ptr<BodySink> sink, Response error) {
    if (!stream_.socket().is_open()) {  // closed meanwhile (Shutdown, Abort)
      if (sink) server_->dispatcher_->RunBody([sink] { sink->Abort(); });
      return;
    }
    // Refused before any of the body was read: the connection cannot be reused.
    if (!sink) {
      linger_ = true;
      return Write(std::move(error), /*force_close=*/true);
    }
    sink_ = std::move(sink);
    const bool expects_continue =
        beast::iequals(header_parser_->get()[bhttp::field::expect], "100-continue");
    upload_parser_.emplace(std::move(*header_parser_));
    header_parser_.reset();
    upload_parser_->body_limit(upload_route_->options.max_body);
    for (auto& piece : pieces_) piece.resize(kUploadPieceBytes);
    // Beast reads no more than the read buffer's free room at a time: left at the size the
    // headers needed, that was ~1 KiB per system call (28,000 for 25 MiB).
    buffer_.reserve(kUploadReadBytes);
    next_piece_ = 0;
    if (expects_continue && !upload_parser_->is_done()) {
      auto cont =
          std::make_shared<bhttp::response<bhttp::empty_body>>(bhttp::status::continue_, version_);
      bhttp::async_write(stream_, *cont,
                         [self = shared_from_this(), cont](beast::error_code ec, size_t) {
                           if (ec) return self->FailUpload(Status::Ok(), /*answer=*/false);
                           self->Pump();
                         });
      return;
    }
    Pump();
  }

  // Two pieces in turn: the next one is read from the socket while the sink stores the last.
  bool PieceFree(int i) const {
    return !(writing_ && writing_piece_ == i) && !(ready_ && ready_->first == i);
  }

  // Moves the upload on: hands a read piece to the sink, reads the next one into a free
  // buffer, or finishes once the body is in and stored.
  void Pump() {
    if (!writing_ && ready_) {
      const auto [index, size] = *ready_;
      ready_.reset();
      writing_ = true;
      writing_piece_ = index;
      // The strand reads nothing into this piece until the sink is done with it.
      server_->dispatcher_->RunBody([self = shared_from_this(), index = index, size = size] {
        Status s = self->Guarded([&] {
          return self->sink_->Write(std::string_view(self->pieces_[index].data(), size));
        });
        net::post(self->stream_.get_executor(),
                  [self, s = std::move(s)] { self->OnPieceStored(s); });
      });
    }
    // While a read is pending its parser may already be done (the read's last step has not
    // run yet), with the last piece not yet handed over: OnPiece moves on from there.
    if (reading_) return;
    if (upload_parser_->is_done()) {
      if (!writing_ && !ready_) FinishUpload();
      return;
    }
    if (PieceFree(next_piece_)) ReadPiece();
  }

  void ReadPiece() {
    auto& body = upload_parser_->get().body();
    body.data = pieces_[next_piece_].data();
    body.size = pieces_[next_piece_].size();
    reading_ = true;
    stream_.expires_after(server_->options_.read_timeout);  // per piece: uploads take long
    bhttp::async_read(
        stream_, buffer_, *upload_parser_,
        [self = shared_from_this()](beast::error_code ec, size_t) { self->OnPiece(ec); });
  }

  void OnPiece(beast::error_code ec) {
    reading_ = false;
    // The upload failed while this read was pending (FailUpload cancelled it).
    if (failed_) return EndWhenIdle();
    if (ec == bhttp::error::need_buffer) ec = {};  // the piece is full
    if (ec == bhttp::error::body_limit) {
      return FailUpload(
          Status::PayloadTooLarge("an upload is at most " +
                                  std::to_string(upload_route_->options.max_body) + " bytes"),
          true);
    }
    if (ec) {
      const bool left = ec == bhttp::error::end_of_stream || ec == net::error::eof ||
                        ec == net::error::operation_aborted || ec == beast::error::timeout ||
                        ec == net::error::connection_reset || ec == bhttp::error::partial_message;
      return FailUpload(Status::InvalidRequest("malformed HTTP request"), !left);
    }
    stream_.expires_never();  // until the next read: the sink's time is not the client's
    const size_t got = pieces_[next_piece_].size() - upload_parser_->get().body().size;
    if (got > 0) {
      ready_ = {next_piece_, got};
      next_piece_ ^= 1;
    }
    Pump();
  }

  void OnPieceStored(const Status& s) {
    writing_ = false;
    if (!s.ok()) return FailUpload(s, true);
    if (failed_) return EndWhenIdle();
    if (!stream_.socket().is_open()) return FailUpload(s, false);
    Pump();
  }

  // The upload fails (the first failure is the one answered, when `answer`). It ends once
  // neither a read nor the sink is busy: a pending read still writes into a piece, and the
  // sink takes one call at a time. A pending read is cancelled.
  void FailUpload(const Status& error, bool answer) {
    if (!failed_) {
      failed_ = error;
      answer_failure_ = answer;
    }
    if (reading_) {
      beast::error_code ignored;
      stream_.socket().cancel(ignored);  // OnPiece comes back with operation_aborted
    }
    EndWhenIdle();
  }

  void EndWhenIdle() {
    if (reading_ || writing_ || !failed_) return;
    const Status error = *failed_;  // EndUpload clears failed_
    EndUpload(error, answer_failure_);
  }

  void FinishUpload() {
    server_->dispatcher_->RunBody([self = shared_from_this()] {
      const log::RequestScope scope(self->request_id_);
      Response res;
      try {
        res = self->sink_->Finish();
      } catch (const std::exception& e) {
        spdlog::error("upload {} threw: {}", self->upload_route_->pattern, e.what());
        res = ErrorResponse(Status::Internal("internal error"));
      }
      net::post(self->stream_.get_executor(), [self, res = std::move(res)]() mutable {
        self->sink_.reset();
        self->pieces_ = {};
        self->buffer_.shrink_to_fit();
        self->server_->dispatcher_->Finished(*self->upload_route_, res.status, self->upload_start_);
        self->Write(std::move(res), false);
      });
    });
  }

  // The upload ends without its body: what the sink kept goes; `answer` with `error`. Only
  // with no read pending and the sink idle (FailUpload).
  void EndUpload(Status error, bool answer) {
    if (!sink_) return;  // ended already
    auto sink = std::move(sink_);
    pieces_ = {};
    buffer_.shrink_to_fit();
    ready_.reset();
    failed_.reset();
    server_->dispatcher_->RunBody([sink] {
      try {
        sink->Abort();
      } catch (const std::exception& e) {
        spdlog::error("aborting an upload threw: {}", e.what());
      }
    });
    if (!answer || !stream_.socket().is_open()) return Close();
    Response res = ErrorResponse(error);
    server_->dispatcher_->Finished(*upload_route_, res.status, upload_start_);
    linger_ = true;
    Write(std::move(res), /*force_close=*/true);  // the rest of the body is not read
  }

  // A sink call that threw is a bug: logged, and the upload fails as internal.
  template <typename Fn>
  Status Guarded(Fn&& fn) {
    const log::RequestScope scope(request_id_);
    try {
      return fn();
    } catch (const std::exception& e) {
      spdlog::error("upload {} threw: {}", upload_route_->pattern, e.what());
      return Status::Internal("internal error");
    }
  }

  // A request to the WebSocket path: refused over HTTP, or handed over with the socket.
  void Upgrade(UpgradeHandler& upgrader, const Request& req) {
    auto& msg = parser_->get();
    if (msg.method() != bhttp::verb::get) {
      Response res = ErrorResponse(Status::NotFound("no route for " + req.method + " " + req.path));
      res.headers.emplace_back("Allow", "GET");
      return Write(std::move(res), false);
    }
    if (!server_->options_.database) return FinishUpgrade(upgrader, upgrader.Authorize(req));
    // The token check may read the database: off the strand, then back to it.
    net::post(*server_->options_.database, [self = shared_from_this(), &upgrader, req] {
      auto user = upgrader.Authorize(req);
      net::post(self->stream_.get_executor(), [self, &upgrader, user = std::move(user)]() mutable {
        self->FinishUpgrade(upgrader, std::move(user));
      });
    });
  }

  void FinishUpgrade(UpgradeHandler& upgrader, Result<int64_t> user) {
    // Closed (Shutdown, Abort) while the token was being checked: nobody to answer.
    if (!stream_.socket().is_open()) return;
    auto& msg = parser_->get();
    if (!user.ok()) return Write(ErrorResponse(user.status()), false);
    if (!beast::websocket::is_upgrade(msg)) {
      return Write(ErrorResponse(Status::InvalidRequest("a WebSocket upgrade is required")), false);
    }
    // Checked here so that a malformed handshake gets the error object (Beast would answer in
    // plain text) and never counts as a connection.
    if (msg[bhttp::field::sec_websocket_key].empty() ||
        msg[bhttp::field::sec_websocket_version] != "13") {
      return Write(ErrorResponse(Status::InvalidRequest(
                       "WebSocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13")),
                   false);
    }
    if (stopping_) {
      return Write(ErrorResponse(Status::Unavailable("the server is shutting down")), true);
    }
    msg.set(kRequestIdHeader, request_id_);  // the hub echoes it in the 101
    LogAnswer(101, {});
    upgrader.Accept(*user, stream_.release_socket(), parser_->release(), std::move(lease_));
    // This session ends here; its destructor unregisters it from the HTTP server.
  }

  // A request's headers are in: its id, method and path, and the start of its time.
  void BeginRequest(const bhttp::request_header<>& head) {
    started_ = std::chrono::steady_clock::now();
    request_id_ = RequestIdFor(head[kRequestIdHeader]);
    method_ = std::string(head.method_string());
    const std::string_view target = head.target();
    path_ = std::string(target.substr(0, target.find('?')));  // the query may hold a token
  }

  // The access log line of an answer (ServerOptions::access_log); answers of 500 and up are
  // logged whatever it says, at warn.
  void LogAnswer(int status, std::string_view route) {
    if (!server_->options_.access_log && status < 500) return;
    const std::chrono::duration<double, std::milli> took =
        std::chrono::steady_clock::now() - started_;
    std::array<log::Field, 6> fields;
    size_t n = 0;
    if (!method_.empty()) fields[n++] = {"method", std::string_view(method_)};
    if (!path_.empty()) fields[n++] = {"path", std::string_view(path_)};
    if (!route.empty()) fields[n++] = {"route", route};
    fields[n++] = {"status", int64_t{status}};
    fields[n++] = {"duration_ms", std::round(took.count() * 1000) / 1000};
    fields[n++] = {"client", std::string_view(client_address_)};
    const log::RequestScope scope(request_id_);
    const log::FieldsScope with(std::span<const log::Field>(fields.data(), n));
    AccessLogger().log(status >= 500 ? spdlog::level::warn : spdlog::level::info, "request");
  }

  Status BodyTooLarge() const {
    return Status::PayloadTooLarge("request body over " +
                                   std::to_string(server_->options_.body_limit) + " bytes");
  }

  void WriteError(const Status& status, int http_status = 0) {
    Response res = ErrorResponse(status);
    if (http_status) res.status = http_status;
    version_ = 11;
    Write(std::move(res), /*force_close=*/true);
  }

  void Write(Response r, bool force_close) {
    if (request_id_.empty()) {  // refused before its headers were read: no id to keep
      request_id_ = NewRequestId();
      started_ = std::chrono::steady_clock::now();
      method_.clear();
      path_.clear();
    }
    r.headers.emplace_back(kRequestIdHeader, request_id_);
    LogAnswer(r.status, r.route.empty() ? route_ : r.route);
    if (server_->options_.cors) server_->options_.cors->AddHeaders(origin_, r.headers);
    if (r.stream) return WriteStream(std::move(r), force_close);
    auto res = std::make_shared<bhttp::response<bhttp::string_body>>(
        static_cast<bhttp::status>(r.status), version_);
    res->set(bhttp::field::server, "mmchat");
    if (!r.content_type.empty()) res->set(bhttp::field::content_type, r.content_type);
    for (auto& [name, value] : r.headers) res->set(name, value);
    res->body() = std::move(r.body);
    const bool close = force_close || !keep_alive_ || stopping_;
    res->keep_alive(!close);
    res->prepare_payload();
    // RFC 9110: a 204 must not carry a Content-Length, and a 304's would be the 200's.
    if (r.status == 204 || r.status == 304) res->erase(bhttp::field::content_length);
    stream_.expires_after(server_->options_.read_timeout);  // a client that never reads
    bhttp::async_write(stream_, *res,
                       [self = shared_from_this(), res, close](beast::error_code ec, size_t) {
                         if (ec) return self->Close();
                         if (close) return self->linger_ ? self->Linger() : self->Close();
                         self->ReadHeader();
                       });
  }

  // ---- Downloads: a body from a BodySource, a piece at a time ------------------------------
  // The next piece is read from the store while the last one is written to the socket.

  struct Download {
    bhttp::response<bhttp::buffer_body> res;
    std::optional<bhttp::response_serializer<bhttp::buffer_body>> serializer;
    std::shared_ptr<BodySource> source;
    std::string piece;                        // being written
    std::optional<Result<std::string>> next;  // read, waiting for the write before it
    bool writing = false;                     // piece is being written
    bool close = false;
  };

  void WriteStream(Response r, bool force_close) {
    download_ = std::make_unique<Download>();
    Download& d = *download_;
    d.res.result(static_cast<bhttp::status>(r.status));
    d.res.version(version_);
    d.res.set(bhttp::field::server, "mmchat");
    if (!r.content_type.empty()) d.res.set(bhttp::field::content_type, r.content_type);
    for (auto& [name, value] : r.headers) d.res.set(name, value);
    d.res.content_length(r.stream_length);
    d.close = force_close || !keep_alive_ || stopping_;
    d.res.keep_alive(!d.close);
    d.res.body().data = nullptr;
    d.res.body().more = true;
    d.source = std::move(r.stream);
    d.serializer.emplace(d.res);
    FetchPiece();
    stream_.expires_after(server_->options_.read_timeout);
    d.writing = true;
    bhttp::async_write_header(stream_, *d.serializer,
                              [self = shared_from_this()](beast::error_code ec, size_t) {
                                self->download_->writing = false;
                                if (ec) return self->Close();
                                self->WritePiece();
                              });
  }

  void FetchPiece() {
    server_->dispatcher_->RunBody([self = shared_from_this()] {
      Result<std::string> piece = Status::Internal("internal error");
      try {
        piece = self->download_->source->Next();
      } catch (const std::exception& e) {
        spdlog::error("a download threw: {}", e.what());
      }
      net::post(self->stream_.get_executor(), [self, piece = std::move(piece)]() mutable {
        self->download_->next = std::move(piece);
        if (!self->download_->writing) self->WritePiece();
      });
    });
  }

  // Writes the piece fetched, if it is in yet, and fetches the one after it meanwhile.
  void WritePiece() {
    Download& d = *download_;
    if (!d.next) {
      stream_.expires_never();  // reading the store is not the client's time
      return;
    }
    Result<std::string> piece = std::move(*d.next);
    d.next.reset();
    // The headers went out already: all that is left to say is to cut the response short.
    if (!piece.ok() || !stream_.socket().is_open()) return Close();
    d.piece = std::move(piece).value();
    auto& body = d.res.body();
    body.data = d.piece.empty() ? nullptr : d.piece.data();
    body.size = d.piece.size();
    body.more = !d.piece.empty();
    if (body.more) FetchPiece();
    stream_.expires_after(server_->options_.read_timeout);  // a client that never reads
    d.writing = true;
    bhttp::async_write(stream_, *d.serializer,
                       [self = shared_from_this()](beast::error_code ec, size_t) {
                         Download& d = *self->download_;
                         d.writing = false;
                         if (ec == bhttp::error::need_buffer) ec = {};
                         if (ec) return self->Close();
                         if (!d.serializer->is_done()) return self->WritePiece();
                         const bool close = d.close;
                         self->download_.reset();
                         if (close) return self->Close();
                         self->ReadHeader();
                       });
  }

  // After refusing an upload whose body was not read: the answer is out, but closing with
  // the body unread would reset the connection, and a client still sending could lose the
  // answer with it. Read and drop what comes, for a while, first.
  void Linger() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    linger_left_ = kLingerBytes;
    stream_.expires_after(kLingerTime);
    Discard();
  }

  void Discard() {
    buffer_.clear();
    stream_.async_read_some(buffer_.prepare(kUploadReadBytes),
                            [self = shared_from_this()](beast::error_code ec, size_t n) {
                              if (ec || n >= self->linger_left_) return self->Close();
                              self->linger_left_ -= n;
                              self->Discard();
                            });
  }

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.socket().close(ignored);
  }

  beast::tcp_stream stream_;
  Server* server_;
  ConnectionLimits::Lease lease_;
  const std::string client_address_;  // formatted once per connection, not per request
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::empty_body>> header_parser_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  // An upload in progress: its parser, sink, route, start and the piece being read.
  std::optional<bhttp::request_parser<bhttp::buffer_body>> upload_parser_;
  std::shared_ptr<BodySink> sink_;
  const Route* upload_route_ = nullptr;
  std::chrono::steady_clock::time_point upload_start_;
  std::array<std::vector<char>, 2> pieces_;
  int next_piece_ = 0;    // the piece the next read fills
  bool writing_ = false;  // the sink is storing piece writing_piece_
  int writing_piece_ = 0;
  std::optional<std::pair<int, size_t>> ready_;  // a piece read, waiting for the sink
  std::optional<Status> failed_;                 // the upload's first failure, ended on once idle
  bool answer_failure_ = false;
  bool linger_ = false;  // close after an unread body (Linger)
  size_t linger_left_ = 0;
  std::string origin_;  // the Origin header of the request being answered (CORS)
  // The request being answered (BeginRequest): its id (empty until its headers are in), method,
  // path, route name (of an upload; others come with the response) and start.
  std::string request_id_;
  std::string method_;
  std::string path_;
  std::string_view route_;
  std::chrono::steady_clock::time_point started_;
  std::unique_ptr<Download> download_;  // a download in progress
  bool reading_ = false;
  bool stopping_ = false;
  bool keep_alive_ = true;
  unsigned version_ = 11;
};

// ---------------------------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------------------------

constexpr int kStrands = 1024;

Server::Server(net::io_context& ioc, Dispatcher* dispatcher, metrics::Registry* registry,
               ServerOptions options)
    : ioc_(ioc),
      dispatcher_(dispatcher),
      options_(std::move(options)),
      limits_(options_.limits != nullptr ? *options_.limits : unlimited_),
      acceptor_(net::make_strand(ioc)),
      accept_backoff_(acceptor_.get_executor()),
      open_connections_(registry->GetGauge("mmchat_http_connections", "Open HTTP connections.")),
      accepted_connections_(registry->GetCounter("mmchat_http_connections_accepted_total",
                                                 "HTTP connections accepted.")),
      refused_connections_(registry->GetCounter(
          "mmchat_connections_refused_total",
          "Connections refused at capacity: the open-file limit or MAX_CONNECTIONS.")),
      refused_per_address_(registry->GetCounter(
          "mmchat_connections_refused_per_address_total",
          "Connections refused because their address had MAX_CONNS_PER_IP open.")) {
  for (int i = 0; i < kStrands; ++i) strands_.push_back(net::make_strand(ioc));
}

Server::~Server() = default;

Status Server::Listen() {
  beast::error_code ec;
  tcp::endpoint endpoint;
  if (options_.host.empty()) {
    endpoint = tcp::endpoint(tcp::v4(), options_.port);
  } else {
    tcp::resolver resolver(ioc_);
    auto results = resolver.resolve(options_.host, std::to_string(options_.port), ec);
    if (ec || results.empty()) {
      return Status::InvalidRequest("cannot resolve HTTP_ADDR host " + options_.host);
    }
    endpoint = results.begin()->endpoint();
  }
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::Unavailable("cannot listen on " + endpoint.address().to_string() + ":" +
                               std::to_string(options_.port) + ": " + ec.message());
  }
  port_ = acceptor_.local_endpoint().port();
  return Status::Ok();
}

void Server::Start() {
  net::dispatch(acceptor_.get_executor(), [this] { Accept(); });
}

void Server::Accept() {
  const auto& strand = strands_[next_strand_++ % strands_.size()];
  acceptor_.async_accept(strand, [this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;  // stopping
    if (ec) {
      // Out of descriptors after all (or another accept error): pause instead of spinning.
      // The connection waits in the listen backlog meanwhile.
      if (std::chrono::steady_clock::now() - accept_error_logged_ >= std::chrono::seconds(10)) {
        spdlog::warn("accept failed: {}; accepting again in 100 ms", ec.message());
        accept_error_logged_ = std::chrono::steady_clock::now();
      }
      accept_backoff_.expires_after(std::chrono::milliseconds(100));
      accept_backoff_.async_wait([this](beast::error_code wait_ec) {
        if (!wait_ec && acceptor_.is_open()) Accept();
      });
      return;
    }
    // accept() hands out the lowest free descriptor, so a number this high means every one
    // below it is taken: the process is within kReservedFiles of its limit.
    const auto fd = static_cast<size_t>(socket.native_handle());
    if (options_.max_open_files > 0 && fd + kReservedFiles >= options_.max_open_files) {
      Refuse(socket, Over::kOpenFiles);
      return Accept();
    }
    const tcp::endpoint peer = socket.remote_endpoint(ec);  // fails if it already left
    ConnectionLimits::Refusal refusal;
    ConnectionLimits::Lease lease = limits_.Acquire(peer.address(), &refusal);
    if (refusal != ConnectionLimits::Refusal::kNone) {
      Refuse(socket,
             refusal == ConnectionLimits::Refusal::kTotal ? Over::kConnections : Over::kPerAddress);
      return Accept();
    }
    socket.set_option(tcp::no_delay(true), ec);
    auto session = std::make_shared<Session>(std::move(socket), this, std::move(lease));
    Register(session);
    session->Start();
    Accept();
  });
}

namespace {

// A whole response, written at once without parsing the request: it fits in an empty socket
// buffer. All of it but the request id, which goes between `head` and `tail`.
struct CannedError {
  CannedError(std::string_view status_line, StatusCode code, std::string_view message) {
    const wire::Json error = {{"error", wire::ErrorObject(Status(code, std::string(message)))}};
    const std::string body = error.dump();
    head = "HTTP/1.1 " + std::string(status_line) +
           "\r\nContent-Type: application/json\r\nRetry-After: 5\r\nConnection: close\r\n"
           "Content-Length: " +
           std::to_string(body.size()) + "\r\n" + std::string(kRequestIdHeader) + ": ";
    tail = "\r\n\r\n" + body;
  }
  std::string With(const std::string& request_id) const { return head + request_id + tail; }

  std::string head;
  std::string tail;
};

}  // namespace

void Server::Refuse(tcp::socket& socket, Over over) {
  static const CannedError kAtCapacity("503 Service Unavailable", StatusCode::kUnavailable,
                                       "the server is at its connection limit");
  static const CannedError kPerAddress("429 Too Many Requests", StatusCode::kRateLimited,
                                       "too many connections from this address");
  // What the client already sent is read first, as closing a socket with unread data resets
  // the connection, and the client might then never see the answer.
  beast::error_code ignored;
  socket.non_blocking(true, ignored);
  char discard[4096];
  socket.read_some(net::buffer(discard), ignored);
  const std::string answer =
      (over == Over::kPerAddress ? kPerAddress : kAtCapacity).With(NewRequestId());
  socket.write_some(net::buffer(answer), ignored);
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  socket.close(ignored);
  if (over == Over::kPerAddress) {
    refused_per_address_->Inc();
    return;
  }
  refused_connections_->Inc();
  ++refusals_unlogged_;
  const auto now = std::chrono::steady_clock::now();
  if (now - refusal_logged_ >= std::chrono::seconds(10)) {
    if (over == Over::kOpenFiles) {
      spdlog::warn("refused {} connection(s): the open-file limit ({}) is nearly reached",
                   refusals_unlogged_, options_.max_open_files);
    } else {
      spdlog::warn("refused {} connection(s): MAX_CONNECTIONS are open", refusals_unlogged_);
    }
    refusals_unlogged_ = 0;
    refusal_logged_ = now;
  }
}

void Server::Register(const std::shared_ptr<Session>& s) {
  open_connections_->Add(1);
  accepted_connections_->Inc();
  bool stopping;
  {
    std::lock_guard lock(mu_);
    sessions_.emplace(s.get(), s);
    stopping = stopping_;
  }
  if (stopping) s->Shutdown();
}

void Server::Unregister(Session* s) {
  open_connections_->Add(-1);
  std::lock_guard lock(mu_);
  sessions_.erase(s);
  if (sessions_.empty()) all_closed_.notify_all();
}

void Server::Stop() {
  // Close the listener synchronously, so that no connection is accepted after Stop returns.
  std::promise<void> closed;
  net::dispatch(acceptor_.get_executor(), [this, &closed] {
    beast::error_code ignored;
    acceptor_.close(ignored);
    accept_backoff_.cancel();
    closed.set_value();
  });
  closed.get_future().wait();
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  for (auto& s : LiveSessions()) s->Shutdown();
}

void Server::Abort() {
  for (auto& s : LiveSessions()) s->Abort();
}

std::vector<std::shared_ptr<Session>> Server::LiveSessions() {
  std::vector<std::shared_ptr<Session>> live;
  std::lock_guard lock(mu_);
  for (auto& [_, weak] : sessions_) {
    if (auto s = weak.lock()) live.push_back(std::move(s));
  }
  return live;
}

bool Server::WaitForConnections(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return all_closed_.wait_for(lock, timeout, [this] { return sessions_.empty(); });
}

}  // namespace mmchat::http
